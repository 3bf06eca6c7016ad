"""Committed records of a topic: what read_committed readers (Spark, the producer's resume) see.

End offsets of a transactional topic also count transaction markers and aborted records, so
progress is counted from the records themselves.
"""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from cryptopipe_schemas.kafka_auth import client_config


def committed_reader(bootstrap_servers: str, **config: object) -> KafkaConsumer:
    """A consumer that sees committed records only, and end offsets up to the last commit."""
    return KafkaConsumer(
        **client_config(),
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **config,
    )


class CommittedRecords:
    """Counts a topic's committed records, reading only what arrived since the last call."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = committed_reader(bootstrap_servers, request_timeout_ms=5000)
        self._topic = topic
        self._partitions: list[TopicPartition] = []
        self._count = 0

    def count(self, poll_ms: int = 500) -> int:
        if not self._partitions:
            found = self._consumer.partitions_for_topic(self._topic) or ()
            if not found:
                return 0
            self._partitions = [TopicPartition(self._topic, p) for p in sorted(found)]
            self._consumer.assign(self._partitions)
            self._consumer.seek_to_beginning(*self._partitions)
        ends = self._consumer.end_offsets(self._partitions)
        while any(self._consumer.position(p) < ends[p] for p in self._partitions):
            batches = self._consumer.poll(timeout_ms=poll_ms)
            if not batches:
                break
            self._count += sum(len(records) for records in batches.values())
        return self._count

    def close(self) -> None:
        self._consumer.close()
