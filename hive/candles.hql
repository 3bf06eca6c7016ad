-- Finalized candles written by cryptopipe-aggregate: parquet under ${hdfs_base}/candles,
-- one folder per symbol, interval and UTC date of the window start. The aggregator adds each
-- new partition to the metastore in the micro-batch that first writes to it.
-- Located beside the data, not in the client's warehouse (a Spark driver in a pod has none).
CREATE DATABASE IF NOT EXISTS ${database} LOCATION '${hdfs_base}/hive/${database}.db';

CREATE EXTERNAL TABLE IF NOT EXISTS ${database}.candles (
  window_start TIMESTAMP COMMENT 'Inclusive start of the window (UTC)',
  window_end TIMESTAMP COMMENT 'Exclusive end of the window (UTC)',
  `open` DOUBLE COMMENT 'First trade by event time, ties by trade id',
  high DOUBLE,
  low DOUBLE,
  `close` DOUBLE COMMENT 'Last trade by event time, ties by trade id',
  base_volume DOUBLE,
  quote_volume DOUBLE,
  vwap DOUBLE,
  trade_count BIGINT,
  taker_buy_volume DOUBLE,
  taker_sell_volume DOUBLE,
  realized_volatility DOUBLE COMMENT 'Null with fewer than two trades',
  is_final BOOLEAN,
  event_time TIMESTAMP COMMENT 'Event time of the last trade in the window',
  ingest_time TIMESTAMP COMMENT 'When the aggregator emitted the candle'
)
COMMENT 'OHLCV candles per symbol and interval'
PARTITIONED BY (symbol STRING, `interval` STRING, `date` STRING)
STORED AS PARQUET
LOCATION '${hdfs_base}/candles';
