"""The trainer's and run-local's readiness check: candles committed to the real HDFS, counted."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cryptopipe_jobs.storage.hdfs_storage import webhdfs_client
from cryptopipe_jobs.train.committed import CommittedCandles, wait_for_rows
from cryptopipe_model.features import CandleDataError

pytestmark = pytest.mark.integration


@pytest.fixture
def client(hdfs_env: dict[str, str]) -> Any:
    return webhdfs_client(hdfs_env["CRYPTOPIPE_WEBHDFS_URL"])


@pytest.fixture
def folder(client: Any) -> Iterator[str]:
    path = f"/test-readiness/{uuid.uuid4().hex}/candles/symbol=BTCUSDT/interval=1h"
    yield path
    client.delete(path.split("/candles/")[0], recursive=True)


def parquet_bytes(rows: int) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"window_start": list(range(rows))}), buffer)
    return buffer.getvalue()


def test_counts_rows_of_committed_parquet_files_only(client: Any, folder: str) -> None:
    committed = CommittedCandles(client, folder)
    assert committed.count() == 0  # the folder does not exist yet

    client.write(f"{folder}/date=2026-11-01/batch-000000000001-00000.parquet", parquet_bytes(24))
    client.write(f"{folder}/date=2026-11-02/batch-000000000001-00000.parquet", parquet_bytes(7))
    # Hidden and staging files are not candles.
    client.write(f"{folder}/date=2026-11-02/.part-1.parquet", parquet_bytes(100))
    client.write(f"{folder}/_SUCCESS", b"")
    assert committed.count() == 31

    client.write(f"{folder}/date=2026-11-02/batch-000000000002-00000.parquet", parquet_bytes(5))
    assert committed.count() == 36

    # A re-run batch deletes what an interrupted run left: a removed file stops counting.
    client.delete(f"{folder}/date=2026-11-01/batch-000000000001-00000.parquet")
    assert committed.count() == 12


def test_waiting_returns_once_enough_candles_are_committed(client: Any, folder: str) -> None:
    committed = CommittedCandles(client, folder)
    said: list[str] = []
    writer = threading.Timer(
        1.0,
        lambda: client.write(
            f"{folder}/date=2026-11-01/batch-000000000001-00000.parquet", parquet_bytes(12)
        ),
    )
    writer.start()
    try:
        assert wait_for_rows(committed, 10, 60, said.append, poll_seconds=0.2) == 12
    finally:
        writer.join()
    assert said and "0 of 10" in said[0]


def test_waiting_gives_up_with_a_message_that_says_what_is_missing(
    client: Any, folder: str
) -> None:
    client.write(f"{folder}/date=2026-11-01/batch-000000000001-00000.parquet", parquet_bytes(3))
    with pytest.raises(CandleDataError, match=r"waited 1 s for 10 candles .*; 3 are there"):
        wait_for_rows(CommittedCandles(client, folder), 10, 1, lambda _: None, poll_seconds=0.2)
