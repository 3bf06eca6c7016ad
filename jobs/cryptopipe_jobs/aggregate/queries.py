"""The running queries of a pool's driver: started, resubscribed and stopped as members change.

`sync` compares what runs with the pool's members (see pool for the rules) and acts on the
difference only: a member joining restarts its query from its checkpoint with the new topic; a
member leaving changes only which candles the query writes; a query whose members all left stops
(its checkpoint stays). `check` restarts a failed query from its checkpoint, at most
`max_restarts` times each, and turns a lenient start strict again once it committed a batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from cryptopipe_jobs.aggregate.pool import (
    QueryGroup,
    Subscription,
    group_specs,
    plan_subscription,
)
from cryptopipe_jobs.sinks.batch_writer import BatchWriter
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_schemas.spec import CryptoPipelineSpec

log = logging.getLogger("cryptopipe.aggregate")
# How long a restart waits for the batch in hand to finish before it stops the query anyway
# (the batch then runs again from the offset log, which is safe, only slower).
BETWEEN_BATCHES_SECONDS = 60.0


class QueryFailed(RuntimeError):
    """A query failed more often than it may be restarted."""


class MemberWriter:
    """The pool's writer, for one query: only the candles of its current members."""

    def __init__(self, writer: BatchWriter, symbols: frozenset[str]) -> None:
        self.writer = writer
        self.symbols = symbols

    def __call__(self, candles: DataFrame, batch_id: int) -> None:
        self.writer(candles.where(F.col("symbol").isin(sorted(self.symbols))), batch_id)


# (group, subscription, checkpoint, writer) -> the started query
StartQuery = Callable[[QueryGroup, Subscription, str, MemberWriter], StreamingQuery]


@dataclass
class RunningQuery:
    group: QueryGroup
    subscription: Subscription
    query: StreamingQuery
    writer: MemberWriter
    strict_after_batch: int | None = None  # a lenient start: restart strict after this batch
    restarts: int = 0


@dataclass
class PoolQueries:
    start_query: StartQuery
    make_writer: Callable[[str], BatchWriter]  # group key -> the pool's writer for that query
    fs: HadoopFs
    checkpoint_root: str
    list_topics: Callable[[], set[str]]
    max_restarts: int = 3
    running: dict[str, RunningQuery] = field(default_factory=dict)
    pending: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> missing topics
    records: dict[str, list[str]] = field(default_factory=dict)  # key -> topics read

    def checkpoint(self, key: str) -> str:
        return f"{self.checkpoint_root}/{key}"

    def record_path(self, key: str) -> str:
        return f"{self.checkpoint_root}/{key}.topics.json"

    def recorded(self, key: str) -> list[str]:
        """The topics the key's checkpoint has read (read from HDFS once, then kept here)."""
        if key not in self.records:
            path = self.record_path(key)
            found = json.loads(self.fs.read_bytes(path)) if self.fs.exists(path) else []
            self.records[key] = list(found)
        return self.records[key]

    def subscription(self, group: QueryGroup, existing: set[str]) -> Subscription:
        return plan_subscription(group.symbols, self.recorded(group.key), existing)

    def sync(self, specs: Sequence[CryptoPipelineSpec]) -> None:
        """Act on the members' and the topics' changes since the last call (cheap otherwise)."""
        groups = group_specs(specs)
        existing = self.list_topics()
        for key in [k for k in self.running if k not in groups]:
            self._stop(self.running.pop(key), "its pipelines left the pool")
        for key, group in groups.items():
            subscription = self.subscription(group, existing)
            self._report_pending(key, subscription)
            current = self.running.get(key)
            if current is None:
                if subscription.topics:
                    self._start(group, subscription)
            elif current.subscription.topics != subscription.topics:
                self._stop(current, "its subscription changed")
                self._start(group, subscription, current.restarts)
            else:
                current.group = group
                current.writer.symbols = group.symbols

    def check(self) -> None:
        for key, current in list(self.running.items()):
            query = current.query
            if not query.isActive:
                error = query.exception()
                if error is None:  # drained (availableNow) or stopped
                    continue
                if current.restarts >= self.max_restarts:
                    raise QueryFailed(f"query {key} failed: {str(error)[:2000]}")
                log.warning(
                    "query failed; restarting from the checkpoint",
                    extra={"query": key, "error": str(error)[:500]},
                )
                # Planned again: a deleted topic is a common reason to have failed.
                subscription = self.subscription(current.group, self.list_topics())
                self._start(current.group, subscription, current.restarts + 1)
                continue
            progress = query.lastProgress
            if (
                current.strict_after_batch is not None
                and progress is not None
                and progress["batchId"] > current.strict_after_batch
            ):
                self._stop(current, "it read past the deleted topics")
                strict = Subscription(current.subscription.topics, current.subscription.pending, ())
                self._start(current.group, strict, current.restarts)

    def await_any(self, seconds: float) -> None:
        """Wait up to `seconds`; return early when a query ends (check() then looks why)."""
        deadline = time.monotonic() + seconds
        for current in list(self.running.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                if current.query.awaitTermination(max(1, round(remaining))):
                    return
            except StreamingQueryException:
                return

    def all_finished(self) -> bool:
        return all(not current.query.isActive for current in self.running.values())

    def stop_all(self) -> None:
        for current in self.running.values():
            current.query.stop()
        self.running.clear()

    def _report_pending(self, key: str, subscription: Subscription) -> None:
        if subscription.pending != self.pending.get(key, ()):
            if subscription.pending:
                log.info(
                    "waiting for trades topics to exist",
                    extra={"query": key, "topics": list(subscription.pending)},
                )
            self.pending[key] = subscription.pending

    def _start(self, group: QueryGroup, subscription: Subscription, restarts: int = 0) -> None:
        if subscription.gone:
            log.warning(
                "topics no longer exist: reading past them once with failOnDataLoss off",
                extra={"query": group.key, "topics": list(subscription.gone)},
            )
        # Recorded before the start: the record is never less than what the checkpoint read.
        if list(subscription.topics) != self.recorded(group.key):
            self.fs.write_bytes(
                self.record_path(group.key), json.dumps(list(subscription.topics)).encode()
            )
            self.records[group.key] = list(subscription.topics)
        writer = MemberWriter(self.make_writer(group.key), group.symbols)
        query = self.start_query(group, subscription, self.checkpoint(group.key), writer)
        last = query.lastProgress
        self.running[group.key] = RunningQuery(
            group,
            subscription,
            query,
            writer,
            strict_after_batch=(last["batchId"] if last else -1) if subscription.lenient else None,
            restarts=restarts,
        )
        log.info(
            "pool query started",
            extra={
                "query": group.key,
                "symbols": sorted(group.symbols),
                "topics": list(subscription.topics),
            },
        )

    def _stop(self, current: RunningQuery, why: str) -> None:
        query = current.query
        deadline = time.monotonic() + BETWEEN_BATCHES_SECONDS
        while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.2)
        query.stop()
        log.info("pool query stopped", extra={"query": current.group.key, "why": why})
