"""Prometheus metrics of the producer; served by the jobs' endpoint (`http_metrics.serve`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cryptopipe_jobs.producer.binance_ws import DEAD_LETTER_CATEGORIES
from cryptopipe_schemas.records import TradeRecord

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = "cryptopipe_producer"
        self.messages_in = Counter(
            f"{prefix}_messages_in",
            "Trades received, per symbol.",
            ["symbol"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            f"{prefix}_messages_out",
            "Records acknowledged by Kafka, per symbol (or deadletter).",
            ["symbol"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            f"{prefix}_dead_letters",
            "Inputs sent to the dead-letter topic, by kind of reason.",
            ["reason"],
            registry=self.registry,
        )
        # Zero from the start: a rate alert on dead letters needs the series before the first one.
        for category in DEAD_LETTER_CATEGORIES:
            self.dead_letters.labels(category)
        self.reconnects = Counter(
            f"{prefix}_reconnects", "Exchange reconnections.", registry=self.registry
        )
        self.backfilled = Counter(
            f"{prefix}_backfilled_trades",
            "Trades fetched over REST to close gaps.",
            ["symbol"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            f"{prefix}_duplicates_dropped",
            "Trades dropped as already published.",
            ["symbol"],
            registry=self.registry,
        )
        self.event_lag = Histogram(
            f"{prefix}_event_lag_seconds",
            "Ingest time minus exchange event time.",
            ["symbol"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.send_latency = Histogram(
            f"{prefix}_send_latency_seconds",
            "From send to Kafka's acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.last_event = Gauge(
            f"{prefix}_last_event_timestamp_seconds",
            "Exchange time of the newest trade.",
            ["symbol"],
            registry=self.registry,
        )
        # Wall time, not exchange time: a replay of history publishes old trades, and its data
        # is fresh as long as it keeps publishing. The stale-data alert reads this one.
        self.last_publish = Gauge(
            f"{prefix}_last_publish_timestamp_seconds",
            "When Kafka last acknowledged a record, per symbol (or deadletter), in Unix time.",
            ["symbol"],
            registry=self.registry,
        )

    def trade_in(self, symbol: str, record: TradeRecord, live: bool) -> None:
        """A trade from a replay or the synthetic source; `live`: its event time is now-ish (the
        synthetic walk), so its lag to ingestion means something."""
        self.messages_in.labels(symbol).inc()
        self.last_event.labels(symbol).set(record["event_time"].timestamp())
        if live:
            lag = record["ingest_time"] - record["event_time"]
            self.event_lag.labels(symbol).observe(max(0.0, lag.total_seconds()))

    def sent(self, label: str, seconds: float) -> None:
        self.messages_out.labels(label).inc()
        self.last_publish.labels(label).set_to_current_time()
        self.send_latency.observe(seconds)


class PrometheusEvents:
    """The exchange source's events (binance_ws.SourceEvents) as Prometheus metrics."""

    def __init__(self, metrics: ProducerMetrics) -> None:
        self._metrics = metrics

    def reconnected(self, reason: str) -> None:
        self._metrics.reconnects.inc()

    def message_in(self, symbol: str) -> None:
        self._metrics.messages_in.labels(symbol).inc()

    def event_lag(self, symbol: str, lag_ms: int) -> None:
        self._metrics.event_lag.labels(symbol).observe(lag_ms / 1000)

    def backfilled(self, symbol: str, count: int) -> None:
        self._metrics.backfilled.labels(symbol).inc(count)

    def duplicate_dropped(self, symbol: str) -> None:
        self._metrics.duplicates.labels(symbol).inc()

    def dead_letter(self, category: str) -> None:
        self._metrics.dead_letters.labels(category).inc()
