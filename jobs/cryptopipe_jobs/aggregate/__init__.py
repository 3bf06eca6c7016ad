"""Spark Structured Streaming aggregation of trades into event-time candles."""
