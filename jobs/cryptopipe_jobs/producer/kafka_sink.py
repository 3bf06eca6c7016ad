"""The Kafka side of the producer: its topics, the transactional producer, and dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from cryptopipe_jobs.kafka_io import create_producer
from cryptopipe_jobs.producer.transactions import (
    DEFAULT_COMMIT_INTERVAL,
    TransactionalProducer,
)
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import encode, encode_key
from cryptopipe_schemas.records import TradeRecord
from cryptopipe_schemas.registry import SchemaIds
from cryptopipe_schemas.retention import topic_config
from cryptopipe_schemas.spec import CryptoPipelineSpec


def producer_topics(
    specs: Iterable[CryptoPipelineSpec], source: str
) -> dict[str, dict[str, int | str]]:
    """The producer's topics and their configs: each symbol's trades (its spec's retention) and
    the source's dead letters (shared by every pipeline of the source: the broker's defaults)."""
    out: dict[str, dict[str, int | str]] = {
        topics.trades(spec.symbol): topic_config(spec, "trades") for spec in specs
    }
    out[topics.deadletter(source)] = {}
    return out


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

    def publish_trade(self, record: TradeRecord) -> None:
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
