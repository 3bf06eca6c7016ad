"""Where candles go: HDFS parquet, Hive partitions, Kafka candle topics, Google Sheets."""
