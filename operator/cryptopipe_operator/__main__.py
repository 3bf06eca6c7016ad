from cryptopipe_operator.main import main

raise SystemExit(main())
