"""Kafka helpers every job shares: topics created as a Strimzi KafkaTopic would, and producers."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner

from cryptopipe_schemas.kafka_auth import client_config


@dataclass(frozen=True)
class TopicSettings:
    partitions: int = 1
    replication: int = 1


class TopicConfigError(RuntimeError):
    """The broker refused a topic's configs (a bad value, or no permission to alter them)."""


TopicConfigs = Mapping[str, Mapping[str, int | str]]


@dataclass(frozen=True)
class EnsuredTopics:
    created: list[str]
    reconfigured: list[str]  # existing topics whose configs were set to the wanted ones


def log_ensured(log: logging.Logger, ensured: EnsuredTopics) -> None:
    """One log line when topics were created or re-configured; none otherwise."""
    if ensured.created or ensured.reconfigured:
        # Not "created": a LogRecord attribute, which `extra` may not overwrite.
        fields = {"topics_created": ensured.created, "topics_reconfigured": ensured.reconfigured}
        log.info("topics ensured", extra=fields)


def _as_kafka_values(configs: Mapping[str, int | str]) -> dict[str, str]:
    return {key: str(value) for key, value in configs.items()}


def _differing(
    admin: KafkaAdminClient, wanted: Mapping[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """Per existing topic, the wanted configs whose live values differ."""
    asked = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs=dict.fromkeys(configs))
        for name, configs in wanted.items()
        if configs
    ]
    if not asked:
        return {}
    live = admin.describe_configs(asked, config_filter="all").get("topic", {})
    out = {}
    for name, configs in wanted.items():
        current = live.get(name, {})
        changed = {k: v for k, v in configs.items() if current.get(k, {}).get("value") != v}
        if changed:
            out[name] = changed
    return out


def ensure_topics(
    admin: KafkaAdminClient,
    wanted: TopicConfigs | Iterable[str],
    settings: TopicSettings,
    alter_existing: bool = True,
) -> EnsuredTopics:
    """Create the missing topics with their configs (as a Strimzi KafkaTopic would), and set the
    configs of existing ones where they differ (a spec's retention changed). A KafkaTopic built
    from the same spec holds the same values, so the two never disagree for long. A client that
    only reads a topic (`alter_existing=False`) creates it if missing and leaves its configs to
    the topic's writer: with ACLs it may not even read them."""
    configs = (
        {name: _as_kafka_values(c) for name, c in wanted.items()}
        if isinstance(wanted, Mapping)
        else {name: {} for name in wanted}
    )
    existing = set(admin.list_topics())
    created = []
    for name in sorted(set(configs) - existing):
        try:
            admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=settings.partitions,
                        replication_factor=settings.replication,
                        topic_configs=configs[name] or None,
                    )
                ]
            )
            created.append(name)
        except TopicAlreadyExistsError:
            existing.add(name)
    if not alter_existing:
        return EnsuredTopics(created, [])
    differing = _differing(admin, {n: c for n, c in configs.items() if n in existing})
    if differing:
        results = admin.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, configs=changed)
                for name, changed in sorted(differing.items())
            ]
        )
        refused = {n: r for n, r in results.get("topic", {}).items() if r != "OK"}
        if refused:
            raise TopicConfigError(f"Kafka refused the topic configs {differing}: {refused}")
    return EnsuredTopics(created, sorted(differing))


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
        **client_config(),
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
