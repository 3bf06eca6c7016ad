"""The Sheets outbox: the durable hand-off that keeps Sheets from stalling the other sinks.

Each micro-batch writes its candles to `<base>/_sheets_outbox/batch-<id>.json` on HDFS before
Spark commits the batch (a re-run overwrites the same file). A background thread in the driver
upserts outbox files oldest first and deletes each only after Sheets accepted all its rows; on
failure it backs off (exponentially, capped) and tries again, while the stream goes on. After a
restart the thread starts with whatever is left, so rows are caught up, never lost, and the
upsert by window start means a file sent twice never duplicates a row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptopipe_jobs.backoff import Backoff
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.sinks.sheets import is_retryable

log = logging.getLogger("cryptopipe.sheets")

TIME_FIELDS = ("window_start", "window_end", "event_time", "ingest_time")
_BATCH_FILE = re.compile(r"batch-(\d+)\.json$")


class Upserter(Protocol):
    def upsert(self, candles: Sequence[Mapping[str, Any]]) -> int: ...

    def forget(self) -> None: ...


def to_json(candles: Sequence[Mapping[str, Any]]) -> bytes:
    """Candles with times as epoch milliseconds (UTC, whatever the local time zone)."""
    return json.dumps(list(candles), separators=(",", ":")).encode()


def from_json(data: bytes) -> list[dict[str, Any]]:
    candles: list[dict[str, Any]] = json.loads(data)
    for candle in candles:
        for name in TIME_FIELDS:
            candle[name] = dt.datetime.fromtimestamp(candle[name] / 1000, tz=dt.UTC)
    return candles


@dataclass(frozen=True)
class Outbox:
    fs: HadoopFs
    folder: str
    writer: str = ""  # the query, when several share the outbox (their batch ids overlap)

    def path(self, batch_id: int) -> str:
        prefix = f"{self.writer}-" if self.writer else ""
        return f"{self.folder}/{prefix}batch-{batch_id:012d}.json"

    def put(self, batch_id: int, payload: bytes) -> None:
        self.fs.mkdirs(self.folder)
        self.fs.write_bytes(self.path(batch_id), payload)

    def pending(self) -> list[str]:
        files = [p for p in self.fs.list_files(self.folder) if _BATCH_FILE.search(p)]
        return sorted(files, key=lambda p: int(_BATCH_FILE.search(p).group(1)))  # type: ignore[union-attr]

    def read(self, path: str) -> list[dict[str, Any]]:
        return from_json(self.fs.read_bytes(path))

    def done(self, path: str) -> None:
        self.fs.delete(path, recursive=False)


@dataclass
class SyncStats:
    rows_written: int = 0
    failures: int = 0
    pending_files: int = 0
    last_error: str | None = None
    consecutive_failures: int = 0


class SheetsSync:
    """Drains the outbox into Sheets on its own thread; `notify()` after each batch."""

    def __init__(
        self,
        outbox: Outbox,
        connect: Callable[[], Upserter],
        backoff: Backoff | None = None,
        on_stats: Callable[[SyncStats], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._connect = connect
        self._writer: Upserter | None = None
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._on_stats = on_stats
        self.stats = SyncStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sheets-sync", daemon=True)

    def start(self) -> None:
        self._wake.set()  # catch up with whatever an earlier run left
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def drain_once(self) -> bool:
        """Send every pending file; False when a failure stopped it (the rest wait)."""
        pending = self._outbox.pending()
        self.stats.pending_files = len(pending)
        for path in pending:
            if self._stop.is_set():
                return True
            try:
                if self._writer is None:
                    self._writer = self._connect()
                self.stats.rows_written += self._writer.upsert(self._outbox.read(path))
                self._outbox.done(path)
                self.stats.pending_files -= 1
                self.stats.consecutive_failures = 0
            except Exception as error:
                if not is_retryable(error):
                    log.error("Sheets refused a batch; kept for a later try", exc_info=True)
                self.stats.failures += 1
                self.stats.consecutive_failures += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"[:300]
                if self._writer is not None:
                    self._writer.forget()
                log.warning(
                    "Sheets write failed; will retry",
                    extra={
                        "error": self.stats.last_error,
                        "pending_files": self.stats.pending_files,
                        "failures": self.stats.failures,
                    },
                )
                return False
            finally:
                if self._on_stats is not None:
                    self._on_stats(self.stats)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set():
                try:
                    if self.drain_once():
                        break
                except Exception:  # the outbox itself unreadable for a moment (HDFS)
                    log.warning("Sheets outbox unreadable; will retry", exc_info=True)
                    self.stats.consecutive_failures += 1
                self._stop.wait(self._backoff.delay(self.stats.consecutive_failures))
