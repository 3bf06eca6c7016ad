"""Where a restarted producer stops repeating itself: the last trade id per symbol in Kafka."""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition

from cryptopipe_schemas import topics
from cryptopipe_schemas.codec import DecodeError, decode


def last_trade_ids(
    bootstrap_servers: str, symbols: Iterable[str], timeout_ms: int = 10_000
) -> dict[str, int]:
    """Read the newest record of every partition of each symbol's trades topic.

    Records of a symbol are keyed by it, so they share one partition and arrive in trade id
    order: the newest record per partition holds the highest id published so far.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        wanted = {topics.trades(symbol): symbol for symbol in symbols}
        partitions = [
            TopicPartition(topic, partition)
            for topic in wanted
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions) if partitions else {}
        last: dict[str, int] = {}
        for partition in partitions:
            end = ends[partition]
            if end == 0:
                continue
            consumer.assign([partition])
            consumer.seek(partition, end - 1)
            for record in _poll_one(consumer, partition, timeout_ms):
                try:
                    trade = decode(record).record
                except DecodeError:
                    continue
                symbol = trade["symbol"]
                last[symbol] = max(last.get(symbol, -1), int(trade["trade_id"]))
        return last
    finally:
        consumer.close()


def _poll_one(consumer: KafkaConsumer, partition: TopicPartition, timeout_ms: int) -> list[bytes]:
    batches = consumer.poll(timeout_ms=timeout_ms, max_records=1)
    return [record.value for record in batches.get(partition, [])]
