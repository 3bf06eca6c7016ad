"""The SparkApplication's main file (local:///opt/cryptopipe/aggregate.py): cryptopipe-aggregate."""

import sys

from cryptopipe_jobs.aggregate.main import main

if __name__ == "__main__":
    sys.exit(main())
