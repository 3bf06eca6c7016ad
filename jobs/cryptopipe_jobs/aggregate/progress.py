"""Per-batch figures from the query's progress: late trades, invalid records, batch times.

Late trades are the watermark drops of the deduplication operator (see pipeline); invalid
records come from the `input` observation. One log line per batch, and Prometheus counters.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pyspark.sql.streaming.listener import StreamingQueryListener

from cryptopipe_jobs.aggregate.pipeline import INPUT_METRICS
from cryptopipe_jobs.sinks.sheets_outbox import SyncStats

log = logging.getLogger("cryptopipe.aggregate")
DEDUPE_OPERATOR = "dedupe"


@dataclass(frozen=True)
class BatchFigures:
    batch_id: int
    records: int
    invalid: int
    late_trades: int
    watermark: str | None
    duration_ms: int


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
        batch_id=progress.batchId,
        records=progress.numInputRows,
        invalid=int(invalid),
        late_trades=int(late),
        watermark=progress.eventTime.get("watermark"),
        duration_ms=int(progress.batchDuration),
    )


class AggregateMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = "cryptopipe_aggregate"
        self.records = Counter(f"{prefix}_records", "Kafka records read.", registry=self.registry)
        self.invalid = Counter(
            f"{prefix}_invalid_records",
            "Records that are no Trade (they stay in the topic).",
            registry=self.registry,
        )
        self.late = Counter(
            f"{prefix}_late_trades",
            "Trades at or before the watermark, left out of every candle.",
            registry=self.registry,
        )
        self.batch_seconds = Gauge(
            f"{prefix}_batch_seconds", "Duration of the last batch.", registry=self.registry
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

    def record(self, batch: BatchFigures) -> None:
        self.records.inc(batch.records)
        self.invalid.inc(batch.invalid)
        self.late.inc(batch.late_trades)
        self.batch_seconds.set(batch.duration_ms / 1000)


class ProgressListener(StreamingQueryListener):
    def __init__(self, metrics: AggregateMetrics) -> None:
        self._metrics = metrics
        self.batches: deque[BatchFigures] = deque(maxlen=1000)

    def onQueryStarted(self, event: Any) -> None:
        log.info("query started", extra={"query_id": str(event.id)})

    def onQueryProgress(self, event: Any) -> None:
        batch = figures(event.progress)
        self.batches.append(batch)
        self._metrics.record(batch)
        log.info(
            "batch",
            extra={
                "batch_id": batch.batch_id,
                "records": batch.records,
                "invalid_records": batch.invalid,
                "late_trades": batch.late_trades,
                "watermark": batch.watermark,
                "duration_ms": batch.duration_ms,
            },
        )

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        log.info("query terminated", extra={"exception": event.exception})
