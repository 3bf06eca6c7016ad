"""Where a restarted producer stops repeating itself: the last trade id per symbol in Kafka."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from cryptopipe_schemas import topics
from cryptopipe_schemas.codec import DecodeError, decode
from cryptopipe_schemas.registry import SchemaIds


@dataclass(frozen=True)
class LastTrade:
    trade_id: int
    event_time: dt.datetime


def last_trades(
    bootstrap_servers: str,
    symbols: Iterable[str],
    timeout_ms: int = 10_000,
    ids: SchemaIds | None = None,
) -> dict[str, LastTrade]:
    """Read the newest record of every partition of each symbol's trades topic.

    Records of a symbol are keyed by it, so they share one partition and arrive in trade id
    order: the newest record per partition holds the highest id published so far.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        names_by_id = (ids or SchemaIds.derived()).names_by_id()
        wanted = {topics.trades(symbol): symbol for symbol in symbols}
        partitions = [
            TopicPartition(topic, partition)
            for topic in wanted
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions) if partitions else {}
        last: dict[str, LastTrade] = {}
        for partition in partitions:
            end = ends[partition]
            if end == 0:
                continue
            consumer.assign([partition])
            consumer.seek(partition, end - 1)
            for record in _poll_one(consumer, partition, timeout_ms):
                try:
                    trade = decode(record, ids=names_by_id).record
                except DecodeError:
                    continue
                symbol, trade_id = trade["symbol"], int(trade["trade_id"])
                if symbol not in last or trade_id > last[symbol].trade_id:
                    last[symbol] = LastTrade(trade_id, trade["event_time"])
        return last
    finally:
        consumer.close()


def _poll_one(consumer: KafkaConsumer, partition: TopicPartition, timeout_ms: int) -> list[bytes]:
    batches = consumer.poll(timeout_ms=timeout_ms, max_records=1)
    return [record.value for record in batches.get(partition, [])]
