"""Kafka helpers every job shares: topics created as a Strimzi KafkaTopic would, and producers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner


@dataclass(frozen=True)
class TopicSettings:
    partitions: int = 1
    replication: int = 1


def ensure_topics(
    admin: KafkaAdminClient, names: Iterable[str], settings: TopicSettings
) -> list[str]:
    """Create the topics that are missing (as a Strimzi KafkaTopic would); return those created."""
    existing = set(admin.list_topics())
    missing = sorted(set(names) - existing)
    created = []
    for name in missing:
        try:
            admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=settings.partitions,
                        replication_factor=settings.replication,
                    )
                ]
            )
            created.append(name)
        except TopicAlreadyExistsError:
            pass
    return created


class CachedKeyPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """Kafka's default keyed partitioning (murmur2, as the Java client does), computed once per
    key and partition count: every record of a symbol has the same key, and pure-Python murmur2
    costs more per record than the rest of the send."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes, int], int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is None:
            chosen: int = super().partition(
                topic, key, serialized_key, value, serialized_value, cluster
            )
            return chosen
        cache_key = (topic, serialized_key, len(cluster.partitions_for_topic(topic) or ()))
        if cache_key not in self._cache:
            self._cache[cache_key] = super().partition(
                topic, key, serialized_key, value, serialized_value, cluster
            )
        return self._cache[cache_key]


def create_producer(
    bootstrap_servers: str, client_id: str, transactional_id: str | None = None
) -> KafkaProducer:
    # Idempotence with acks=all: a retried send never duplicates and never reorders per partition.
    # Large batches with a short linger: a burst fills them (one wake-up of the sender thread per
    # batch, not per record), a quiet stream waits at most 20 ms.
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        transactional_id=transactional_id,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5,
        compression_type=None,
        partitioner=CachedKeyPartitioner(),
    )
