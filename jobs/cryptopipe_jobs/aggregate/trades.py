"""Trades from Kafka: strip the Confluent header and decode the Avro Trade record."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro

from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName, schema_json
from cryptopipe_schemas.kafka_auth import spark_options

HEADER_BYTES = 5
# A task reads a known offset range, but when the range ends at the end of the log the
# consumer's last fetch finds nothing new and the broker holds it for fetch.max.wait.ms (500 ms
# by default): the last batch of a backlog (a restart's catch-up) took 740-820 ms instead of
# 220-360 ms for 100,000 records. Live batches usually end before new trades, and gained little.
FETCH_MAX_WAIT_MS = 10


def kafka_trades(
    spark: SparkSession,
    bootstrap_servers: str,
    symbols: Sequence[str],
    *,
    max_offsets_per_trigger: int | None = None,
    min_partitions: int | None = None,
) -> DataFrame:
    """The trades topics of `symbols` as a stream of Kafka rows."""
    return kafka_topics(
        spark,
        bootstrap_servers,
        [topics.trades(symbol) for symbol in symbols],
        max_offsets_per_trigger=max_offsets_per_trigger,
        min_partitions=min_partitions,
    )


def kafka_topics(
    spark: SparkSession,
    bootstrap_servers: str,
    topic_names: Sequence[str],
    *,
    max_offsets_per_trigger: int | None = None,
    min_partitions: int | None = None,
    fail_on_data_loss: bool = True,
) -> DataFrame:
    """Trades topics as a stream of Kafka rows.

    A symbol's trades share one Kafka partition (keyed by symbol), which Spark reads in one task
    unless `min_partitions` splits its offset range: decoding is the heaviest per-record step
    before the first shuffle, so the caller passes the cores it has.
    """
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .options(**spark_options())
        .option("subscribe", ",".join(topic_names))
        .option("startingOffsets", "earliest")
        # The producer publishes in transactions: an aborted one (a fenced or crashed producer's)
        # is sent again by its successor and must not be counted twice.
        .option("kafka.isolation.level", "read_committed")
        # A topic recreated or truncated under us is an operator problem, never silent loss;
        # the one exception is the start that drops a deleted topic (see aggregate.pool).
        .option("failOnDataLoss", "true" if fail_on_data_loss else "false")
        .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    if min_partitions:
        reader = reader.option("minPartitions", str(min_partitions))
    return reader.load()


def is_framed(value: Column) -> Column:
    """Confluent framing: at least the 5-byte header, and magic byte 0.

    The schema id is not checked: it is ours when derived and a registry's otherwise, and the
    trades topics hold Trade records only.
    """
    return (F.length(value) > HEADER_BYTES) & (F.substring(value, 1, 1) == F.unhex(F.lit("00")))


def decoded_trade(value: Column) -> Column:
    """The Trade struct, or null for a payload that is not a Trade (PERMISSIVE mode)."""
    body = F.substring(value, HEADER_BYTES + 1, F.length(value) - HEADER_BYTES)
    decoded = from_avro(body, json.dumps(schema_json(SchemaName.TRADE)), {"mode": "PERMISSIVE"})
    return F.when(is_framed(value), decoded)


def trades(raw: DataFrame) -> DataFrame:
    """Decode Kafka rows; a row that is not a Trade keeps `trade` null (counted by the caller)."""
    return raw.select(decoded_trade(F.col("value")).alias("trade"))
