-- Forecasts written by cryptopipe-predict: parquet under ${hdfs_base}/forecasts, one folder per
-- symbol, interval and UTC date of made_at (the Forecast Avro record, less the partition keys).
-- Located beside the data, not in the client's warehouse (a Spark driver in a pod has none).
CREATE DATABASE IF NOT EXISTS ${database} LOCATION '${hdfs_base}/hive/${database}.db';

CREATE EXTERNAL TABLE IF NOT EXISTS ${database}.forecasts (
  made_at TIMESTAMP COMMENT 'Window end of the last candle the forecast used (UTC)',
  target_time TIMESTAMP COMMENT 'Window end of the forecast candle (UTC)',
  horizon_step INT,
  point DOUBLE,
  lower DOUBLE,
  upper DOUBLE,
  coverage DOUBLE,
  model STRING COMMENT 'Model version or baseline name',
  event_time TIMESTAMP,
  ingest_time TIMESTAMP
)
COMMENT 'Price forecasts with prediction intervals'
PARTITIONED BY (symbol STRING, `interval` STRING, `date` STRING)
STORED AS PARQUET
LOCATION '${hdfs_base}/forecasts';
