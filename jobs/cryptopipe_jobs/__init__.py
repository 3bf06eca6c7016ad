"""cryptopipe jobs: producer, Spark aggregation, sinks, training and prediction."""
