"""Finalized candles to `candles.<interval>.<symbol>`: Avro in the Confluent framing.

At-least-once: Spark re-runs a micro-batch that was interrupted before its commit, and Kafka
already holds what the first run sent, so a candle can appear twice after a driver crash.
Consumers deduplicate by (symbol, interval, window_start) with `candle_dedupe.CandleDeduper`.
"""

from __future__ import annotations

import json

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import to_avro

from cryptopipe_schemas.avro_schemas import CANDLE_FIELDS, SchemaName, schema_json
from cryptopipe_schemas.codec import HEADER, MAGIC_BYTE
from cryptopipe_schemas.kafka_auth import spark_options
from cryptopipe_schemas.registry import SchemaIds


def framed(record: Column, name: SchemaName, schema_id: int) -> Column:
    """Confluent framing in Spark: magic byte and schema id, then the Avro binary."""
    header = F.lit(bytearray(HEADER.pack(MAGIC_BYTE, schema_id)))
    return F.concat(header, to_avro(record, json.dumps(schema_json(name))))


def topic_name(interval: Column, symbol: Column) -> Column:
    """topics.candles(interval, symbol), as a column."""
    return F.concat(F.lit("candles."), interval, F.lit("."), F.lower(symbol))


def kafka_records(candles: DataFrame, ids: SchemaIds) -> DataFrame:
    record = F.struct(*(F.col(name) for name in CANDLE_FIELDS))
    key = F.struct(F.col("symbol").alias("symbol"))
    return candles.select(
        topic_name(F.col("interval"), F.col("symbol")).alias("topic"),
        framed(key, SchemaName.SYMBOL_KEY, ids.of(SchemaName.SYMBOL_KEY)).alias("key"),
        framed(record, SchemaName.CANDLE, ids.of(SchemaName.CANDLE)).alias("value"),
    )


def in_time_order(candles: DataFrame) -> DataFrame:
    """Each (symbol, interval) in one task, oldest window first: a key's records reach its
    Kafka partition in window order, so a consumer's newest candle is the newest window."""
    return candles.repartition("symbol", "interval").sortWithinPartitions(
        "symbol", "interval", "window_start"
    )


def write_batch(candles: DataFrame, bootstrap_servers: str, ids: SchemaIds) -> None:
    (
        kafka_records(in_time_order(candles), ids)
        .write.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .options(**spark_options())
        .option("kafka.acks", "all")
        .option("kafka.enable.idempotence", "true")
        .save()
    )
