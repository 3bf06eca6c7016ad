"""cryptopipe-predict: finalized candles from Kafka in, Forecast records out."""
