"""Storage back ends for the model registry (the `Storage` protocol of cryptopipe_model)."""
