"""Recent candles, forecasts and trades from Kafka topics (Confluent-framed Avro)."""

from __future__ import annotations

import datetime as dt
import functools
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from cryptopipe_dashboard.readers.outcome import Read, attempt
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import DecodeError, decode
from cryptopipe_schemas.kafka_auth import client_config
from cryptopipe_schemas.registry import ResolvingIds

CANDLE_KEY = ["symbol", "interval", "window_start"]
FORECAST_KEY = ["symbol", "interval", "made_at", "horizon_step"]


class KafkaUnreachable(ConnectionError):
    """No bootstrap server accepts a connection."""


def _check_reachable(bootstrap: str, timeout: float = 2.0) -> None:
    # kafka-python retries an unreachable cluster for a long time; a page must not hang on it.
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError):
            continue
    raise KafkaUnreachable(bootstrap)


def explain(error: Exception) -> str:
    if isinstance(error, KafkaUnreachable):
        return "Kafka is not reachable; the page will show data as soon as it is back."
    if isinstance(error, KafkaError):
        return (
            f"Kafka answered with an error ({type(error).__name__}); retrying on the next refresh."
        )
    return f"could not read from Kafka ({type(error).__name__}: {error})."


NEWEST_TRADE_OFFSETS = 64


@contextmanager
def _consumer(bootstrap: str) -> Iterator[KafkaConsumer]:
    _check_reachable(bootstrap)
    # read_committed: the producer publishes trades in transactions; an aborted one is not data.
    consumer = KafkaConsumer(
        **client_config(),
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=5000,
        consumer_timeout_ms=2000,
    )
    try:
        yield consumer
    finally:
        consumer.close()


@functools.cache
def schema_ids(registry_url: str | None) -> Mapping[int, SchemaName] | None:
    """One id resolver per registry for the whole server: ids are looked up once."""
    return ResolvingIds(registry_url) if registry_url else None


def tail_records(
    bootstrap: str, topic: str, limit: int, registry_url: str | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` records of every partition, decoded; undecodable ones are skipped."""
    ids = schema_ids(registry_url)
    with _consumer(bootstrap) as consumer:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, max(starts[partition], ends[partition] - limit))
        records: list[dict[str, Any]] = []
        while any(consumer.position(p) < ends[p] for p in partitions):
            batch = consumer.poll(timeout_ms=2000)
            if not batch:
                break
            for messages in batch.values():
                for message in messages:
                    try:
                        records.append(decode(message.value, ids=ids).record)
                    except DecodeError:
                        continue
        return records


def candles_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Finalized candles, one per key (Kafka delivery is at least once), oldest first."""
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    frame = frame[frame["is_final"]]
    return (
        frame.drop_duplicates(CANDLE_KEY, keep="last")
        .sort_values("window_start")
        .reset_index(drop=True)
    )


def forecasts_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    return (
        frame.drop_duplicates(FORECAST_KEY, keep="last")
        .sort_values(["made_at", "horizon_step"])
        .reset_index(drop=True)
    )


def read_candles(
    bootstrap: str, symbol: str, interval: str, limit: int, registry_url: str | None = None
) -> Read[pd.DataFrame]:
    topic = topics.candles(interval, symbol)
    return attempt(
        f"candles ({topic})",
        lambda: candles_frame(tail_records(bootstrap, topic, limit, registry_url)),
        explain,
    )


def read_forecasts(
    bootstrap: str, symbol: str, limit: int, registry_url: str | None = None
) -> Read[pd.DataFrame]:
    topic = topics.forecasts(symbol)
    return attempt(
        f"forecasts ({topic})",
        lambda: forecasts_frame(tail_records(bootstrap, topic, limit, registry_url)),
        explain,
    )


def read_newest_trade_time(
    bootstrap: str, symbol: str, registry_url: str | None = None
) -> Read[dt.datetime | None]:
    topic = topics.trades(symbol)

    def newest() -> dt.datetime | None:
        # Transaction markers take offsets too: the newest few offsets hold at least one trade.
        records = tail_records(bootstrap, topic, NEWEST_TRADE_OFFSETS, registry_url)
        times = [record["event_time"] for record in records]
        return max(times) if times else None

    return attempt(f"trades ({topic})", newest, explain)
