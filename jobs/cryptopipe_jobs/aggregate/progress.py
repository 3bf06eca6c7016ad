"""Per-batch figures from the query's progress: late trades, invalid records, batch times, and
how far the query is behind its topics.

Late trades are the watermark drops of the deduplication operator (see pipeline); invalid
records come from the `input` observation; the offsets behind are the Kafka source's own
`maxOffsetsBehindLatest`. One log line per batch, and Prometheus series labelled by query (a
pool runs one query per group of intervals and watermark).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pyspark.sql.streaming.listener import StreamingQueryListener

from cryptopipe_jobs.aggregate.pipeline import INPUT_METRICS
from cryptopipe_jobs.sinks.sheets_outbox import SyncStats

log = logging.getLogger("cryptopipe.aggregate")
DEDUPE_OPERATOR = "dedupe"


# Spark's batch durations: a trigger of seconds, a first batch or a catch-up of minutes.
BATCH_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class BatchFigures:
    query: str
    batch_id: int
    records: int
    invalid: int
    late_trades: int
    watermark: str | None
    duration_ms: int
    offsets_behind: int | None = None


def offsets_behind(sources: Any) -> int | None:
    """The largest `maxOffsetsBehindLatest` of the query's Kafka sources (None before the first
    batch reads, or for a source that does not report it)."""
    behind = [
        int(float(source.metrics["maxOffsetsBehindLatest"]))
        for source in sources
        if (source.metrics or {}).get("maxOffsetsBehindLatest") is not None
    ]
    return max(behind) if behind else None


def figures(progress: Any) -> BatchFigures:
    """The figures of one StreamingQueryProgress."""
    late = sum(
        operator.numRowsDroppedByWatermark
        for operator in progress.stateOperators
        if operator.operatorName == DEDUPE_OPERATOR
    )
    observed = progress.observedMetrics.get(INPUT_METRICS)
    invalid = (observed["invalid"] or 0) if observed is not None else 0
    return BatchFigures(
        query=progress.name or str(progress.id),
        batch_id=progress.batchId,
        records=progress.numInputRows,
        invalid=int(invalid),
        late_trades=int(late),
        watermark=progress.eventTime.get("watermark"),
        duration_ms=int(progress.batchDuration),
        offsets_behind=offsets_behind(progress.sources),
    )


class AggregateMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = "cryptopipe_aggregate"
        by_query = ["query"]
        self.records = Counter(
            f"{prefix}_records", "Kafka records read.", by_query, registry=self.registry
        )
        self.invalid = Counter(
            f"{prefix}_invalid_records",
            "Records that are no Trade (they stay in the topic).",
            by_query,
            registry=self.registry,
        )
        self.late = Counter(
            f"{prefix}_late_trades",
            "Trades at or before the watermark, left out of every candle.",
            by_query,
            registry=self.registry,
        )
        self.batch_duration = Histogram(
            f"{prefix}_batch_duration_seconds",
            "Wall time of each micro-batch.",
            by_query,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.last_progress = Gauge(
            f"{prefix}_last_progress_timestamp_seconds",
            "When the query last reported a batch or its idleness (Unix time): it runs.",
            by_query,
            registry=self.registry,
        )
        self.offsets_behind = Gauge(
            f"{prefix}_offsets_behind_latest",
            "Records the query is behind its topics' newest offsets (the largest per partition).",
            by_query,
            registry=self.registry,
        )
        self.sheets_pending = Gauge(
            f"{prefix}_sheets_pending_batches",
            "Batches waiting for Google Sheets.",
            registry=self.registry,
        )
        self.sheets_failures = Counter(
            f"{prefix}_sheets_write_failures", "Failed Sheets writes.", registry=self.registry
        )
        self._sheets_failures_seen = 0

    def sheets_stats(self, stats: SyncStats) -> None:
        """The Sheets outbox's figures: its failures are a running total, counted as they grow."""
        self.sheets_pending.set(stats.pending_files)
        self.sheets_failures.inc(stats.failures - self._sheets_failures_seen)
        self._sheets_failures_seen = stats.failures

    def idle(self, query: str) -> None:
        self.last_progress.labels(query).set_to_current_time()

    def record(self, batch: BatchFigures) -> None:
        self.records.labels(batch.query).inc(batch.records)
        self.invalid.labels(batch.query).inc(batch.invalid)
        self.late.labels(batch.query).inc(batch.late_trades)
        self.batch_duration.labels(batch.query).observe(batch.duration_ms / 1000)
        self.last_progress.labels(batch.query).set_to_current_time()
        if batch.offsets_behind is not None:
            self.offsets_behind.labels(batch.query).set(batch.offsets_behind)


class ProgressListener(StreamingQueryListener):
    def __init__(self, metrics: AggregateMetrics) -> None:
        self._metrics = metrics
        self.batches: deque[BatchFigures] = deque(maxlen=1000)
        # An idle event carries the query's id only; its name comes from the start event.
        self._names: dict[str, str] = {}

    def onQueryStarted(self, event: Any) -> None:
        query = self._names[str(event.id)] = event.name or str(event.id)
        self._metrics.idle(query)
        log.info("query started", extra={"query_id": str(event.id), "query": event.name})

    def onQueryProgress(self, event: Any) -> None:
        batch = figures(event.progress)
        self.batches.append(batch)
        self._metrics.record(batch)
        log.info(
            "batch",
            extra={
                "query": batch.query,
                "batch_id": batch.batch_id,
                "records": batch.records,
                "invalid_records": batch.invalid,
                "late_trades": batch.late_trades,
                "watermark": batch.watermark,
                "duration_ms": batch.duration_ms,
                "offsets_behind": batch.offsets_behind,
            },
        )

    def onQueryIdle(self, event: Any) -> None:
        self._metrics.idle(self._names.get(str(event.id), str(event.id)))

    def onQueryTerminated(self, event: Any) -> None:
        log.info("query terminated", extra={"exception": event.exception})
