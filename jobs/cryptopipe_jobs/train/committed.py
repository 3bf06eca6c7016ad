"""When training may start: the candles the aggregator has committed to HDFS, counted.

The trainer (`--wait-for-data`) and run-local wait on this, not on the candles topic: the topic
outlives a run's state (a new state folder, or an HDFS reset, meets an old topic already full),
and the trainer reads parquet. A parquet file never changes once the sink has moved it into its
partition, so each one is read once and only its footer's row count is kept.
"""

from __future__ import annotations

import io
import posixpath
import time
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq

from cryptopipe_jobs.train.sources import is_data_file
from cryptopipe_model.features import CandleDataError


class CommittedCandles:
    """Rows in the parquet files under one HDFS folder (WebHDFS client, absolute path)."""

    def __init__(self, client: Any, folder: str) -> None:
        self.client = client
        self.folder = folder
        self._rows: dict[str, int] = {}

    def count(self) -> int:
        if self.client.status(self.folder, strict=False) is None:
            return 0
        present = set()
        for root, _, names in self.client.walk(self.folder):
            for name in names:
                if is_data_file(name):
                    path = posixpath.join(root, name)
                    present.add(path)
                    if path not in self._rows:
                        self._rows[path] = self._read_rows(path)
        return sum(rows for path, rows in self._rows.items() if path in present)

    def _read_rows(self, path: str) -> int:
        with self.client.read(path) as reader:
            return int(pq.read_metadata(io.BytesIO(reader.read())).num_rows)


def wait_for_rows(
    committed: CommittedCandles,
    needed: int,
    timeout: float,
    say: Callable[[str], None],
    poll_seconds: float = 10,
) -> int:
    """The count once it reaches `needed`; CandleDataError if it has not after `timeout` s."""
    deadline = time.monotonic() + timeout
    said = -1
    while (count := committed.count()) < needed:
        if time.monotonic() >= deadline:
            raise CandleDataError(
                f"waited {timeout:.0f} s for {needed} candles under {committed.folder}; "
                f"{count} are there (is the aggregator running?)"
            )
        if count != said:
            say(f"  waiting for candles: {count} of {needed} under {committed.folder}")
            said = count
        time.sleep(poll_seconds)
    return count
