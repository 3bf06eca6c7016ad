"""Binance (or replay) trades into Kafka as Avro, with dead letters for what cannot be read."""
