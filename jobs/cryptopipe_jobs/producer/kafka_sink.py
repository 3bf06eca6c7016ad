"""The Kafka side of the producer: topics, the transactional producer, and dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner

from cryptopipe_jobs.producer.transactions import (
    DEFAULT_COMMIT_INTERVAL,
    TransactionalProducer,
)
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import encode, encode_key
from cryptopipe_schemas.registry import SchemaIds


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


def producer_topics(symbols: Iterable[str], source: str) -> list[str]:
    return [*(topics.trades(symbol) for symbol in symbols), topics.deadletter(source)]


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


def create_transactional(
    bootstrap_servers: str,
    client_id: str,
    transactional_id: str,
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
) -> TransactionalProducer:
    """The trades producer: started (older producers with this id fenced), ready to send."""
    producer = TransactionalProducer(
        create_producer(bootstrap_servers, client_id, transactional_id), commit_interval
    )
    producer.start()
    return producer


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KafkaTradeSink:
    """Publishes Trade records keyed by symbol, and dead letters of one source."""

    def __init__(
        self,
        producer: TransactionalProducer,
        source: str,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        on_sent: Callable[[str, float], None] | None = None,
        ids: SchemaIds | None = None,
    ) -> None:
        self._ids = ids or SchemaIds.derived()
        self._trade_id = self._ids.of(SchemaName.TRADE)
        # Per symbol, its topic and its encoded key: the same for every trade of the symbol.
        self._routes: dict[str, tuple[str, bytes]] = {}
        self._producer = producer
        self._source = source
        self._clock = clock
        self._on_sent = on_sent

    @property
    def failed(self) -> bool:
        return self._producer.failure is not None

    def _send(self, topic: str, key: bytes | None, value: bytes, label: str) -> None:
        # A refused record fails the producer (its transaction is never committed): the next
        # send raises DeliveryError.
        future = self._producer.send(topic, key=key, value=value)
        if self._on_sent is not None:
            on_sent, clock, began = self._on_sent, self._clock, self._clock()
            future.add_callback(lambda _: on_sent(label, (clock() - began).total_seconds()))

    def _route(self, symbol: str) -> tuple[str, bytes]:
        route = self._routes.get(symbol)
        if route is None:
            key = encode_key(symbol, id_override=self._ids.of(SchemaName.SYMBOL_KEY))
            route = self._routes[symbol] = (topics.trades(symbol), key)
        return route

    def publish_trade(self, record: dict[str, Any]) -> None:
        symbol = record["symbol"]
        topic, key = self._route(symbol)
        value = encode(SchemaName.TRADE, record, id_override=self._trade_id)
        self._send(topic, key, value, symbol)

    def publish_dead_letter(
        self, raw: bytes, reason: str, *, stream: str | None, event_time_ms: int | None
    ) -> None:
        record = {
            "source": self._source,
            "original_topic": stream,
            "raw": raw,
            "reason": reason,
            "event_time": (
                dt.datetime.fromtimestamp(event_time_ms / 1000, tz=dt.UTC)
                if event_time_ms is not None
                else None
            ),
            "ingest_time": self._clock(),
        }
        # No key: a dead letter may have no readable symbol.
        self._send(
            topics.deadletter(self._source),
            None,
            encode(
                SchemaName.DEAD_LETTER, record, id_override=self._ids.of(SchemaName.DEAD_LETTER)
            ),
            "deadletter",
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every record and commit them; raises DeliveryError if anything failed."""
        self._producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what was published (unless something failed) and close the producer."""
        self._producer.close(timeout)
        self._producer.check()
