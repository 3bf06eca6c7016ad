"""Where a restarted producer stops repeating itself: the last trade id per symbol in Kafka."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from kafka import KafkaConsumer, TopicPartition

from cryptopipe_jobs.producer.committed import committed_reader
from cryptopipe_schemas import topics
from cryptopipe_schemas.codec import DecodeError, decode
from cryptopipe_schemas.registry import SchemaIds


@dataclass(frozen=True)
class LastTrade:
    trade_id: int
    event_time: dt.datetime
    price: Decimal | None = None


def last_trades(
    bootstrap_servers: str,
    symbols: Iterable[str],
    timeout_ms: int = 10_000,
    ids: SchemaIds | None = None,
) -> dict[str, LastTrade]:
    """Read the newest committed record of every partition of each symbol's trades topic.

    Records of a symbol are keyed by it, so they share one partition and arrive in trade id
    order: the newest committed record per partition holds the highest id published so far.
    Records of aborted transactions (a fenced or crashed producer's) are not seen.
    """
    consumer = committed_reader(bootstrap_servers)
    try:
        names_by_id = (ids or SchemaIds.derived()).readable_ids()
        wanted = {topics.trades(symbol): symbol for symbol in symbols}
        partitions = [
            TopicPartition(topic, partition)
            for topic in wanted
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        last: dict[str, LastTrade] = {}
        for partition in partitions:
            for value in reversed(newest_values(consumer, partition, timeout_ms)):
                try:
                    trade = decode(value, ids=names_by_id).record
                except DecodeError:
                    continue
                symbol, trade_id = trade["symbol"], int(trade["trade_id"])
                if symbol not in last or trade_id > last[symbol].trade_id:
                    last[symbol] = LastTrade(trade_id, trade["event_time"], trade["price"])
                break
        return last
    finally:
        consumer.close()


def newest_values(
    consumer: KafkaConsumer, partition: TopicPartition, timeout_ms: int
) -> list[bytes]:
    """The values of the newest committed records of one partition (empty if it has none).

    Transaction markers and aborted records take offsets too, so the last offset is rarely a
    record: read a growing stretch before the end until it holds one.
    """
    consumer.assign([partition])
    first = consumer.beginning_offsets([partition])[partition]
    end = consumer.end_offsets([partition])[partition]
    stretch = 16
    while end > first:
        start = max(first, end - stretch)
        values = read_range(consumer, partition, start, end, timeout_ms)
        if values or start == first:
            return values
        stretch *= 16
    return []


def read_range(
    consumer: KafkaConsumer, partition: TopicPartition, start: int, end: int, timeout_ms: int
) -> list[bytes]:
    consumer.seek(partition, start)
    deadline = time.monotonic() + timeout_ms / 1000
    values: list[bytes] = []
    while consumer.position(partition) < end:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"reading {partition} from {start} to {end} took over {timeout_ms} ms"
            )
        for record in consumer.poll(timeout_ms=500).get(partition, []):
            if record.offset < end:
                values.append(record.value)
    return values
