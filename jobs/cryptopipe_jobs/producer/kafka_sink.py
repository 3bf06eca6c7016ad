"""The Kafka side of the producer: topics, the idempotent producer, and dead letters."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import encode, encode_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSettings:
    partitions: int = 1
    replication: int = 1


class DeliveryError(RuntimeError):
    """Kafka refused a record after the producer's own retries: stop, and resume on restart."""


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


def create_producer(bootstrap_servers: str, client_id: str) -> KafkaProducer:
    # Idempotence with acks=all: a retried send never duplicates and never reorders per partition.
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        max_in_flight_requests_per_connection=5,
        compression_type=None,
    )


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KafkaTradeSink:
    """Publishes Trade records keyed by symbol, and dead letters of one source."""

    def __init__(
        self,
        producer: KafkaProducer,
        source: str,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        on_sent: Callable[[str, float], None] | None = None,
    ) -> None:
        self._producer = producer
        self._source = source
        self._clock = clock
        self._on_sent = on_sent
        self._failure: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def _check(self) -> None:
        if self._failure is not None:
            raise DeliveryError(f"Kafka refused a record: {self._failure}") from self._failure

    def _send(self, topic: str, key: bytes | None, value: bytes, label: str) -> None:
        self._check()
        began = self._clock()
        future = self._producer.send(topic, key=key, value=value)

        def failed(error: BaseException) -> None:
            log.error("delivery to %s failed: %s", topic, error)
            self._failure = error

        future.add_errback(failed)
        if self._on_sent is not None:
            on_sent = self._on_sent
            future.add_callback(lambda _: on_sent(label, (self._clock() - began).total_seconds()))

    def publish_trade(self, record: dict[str, Any]) -> None:
        symbol = record["symbol"]
        self._send(
            topics.trades(symbol), encode_key(symbol), encode(SchemaName.TRADE, record), symbol
        )

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
            encode(SchemaName.DEAD_LETTER, record),
            "deadletter",
        )

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout=timeout)
        self._check()

    def close(self, timeout: float = 30.0) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)
