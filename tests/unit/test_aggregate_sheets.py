"""The Sheets writer through gspread against the local Sheets v4 server (real HTTP, real OAuth
token exchange with a service-account key): upserts, worksheets, and failures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gspread
import pytest
from fakes.sheets_server import SheetsServer, service_account_file
from prometheus_client import generate_latest

from cryptopipe_jobs.aggregate.progress import AggregateMetrics
from cryptopipe_jobs.backoff import Backoff
from cryptopipe_jobs.sinks.sheets import COLUMNS, SheetsWriter, is_retryable, worksheet_title
from cryptopipe_jobs.sinks.sheets_client import open_spreadsheet
from cryptopipe_jobs.sinks.sheets_outbox import SyncStats, from_json, to_json

pytestmark = pytest.mark.unit
SHEET_ID = "sheet-under-test"
T0 = dt.datetime(2025, 11, 29, 20, 0, tzinfo=dt.UTC)


@pytest.fixture
def server() -> Iterator[SheetsServer]:
    running = SheetsServer().start()
    running.create(SHEET_ID)
    yield running
    running.stop()


@pytest.fixture
def writer(server: SheetsServer, tmp_path: Path) -> SheetsWriter:
    key = service_account_file(server.token_uri, str(tmp_path / "sa.json"))
    return SheetsWriter(open_spreadsheet(key, SHEET_ID, api_url=server.url))


def candle(symbol: str, interval: str, minute: int, close: float) -> dict[str, Any]:
    start = T0 + dt.timedelta(minutes=minute)
    return {
        "symbol": symbol,
        "interval": interval,
        "window_start": start,
        "window_end": start + dt.timedelta(minutes=1),
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": close,
        "base_volume": 3.0,
        "quote_volume": 4.0,
        "vwap": 1.5,
        "trade_count": 7,
        "taker_buy_volume": 1.0,
        "taker_sell_volume": 2.0,
        "realized_volatility": None,
        "is_final": True,
        "event_time": start + dt.timedelta(seconds=59),
        "ingest_time": start + dt.timedelta(minutes=2),
    }


def data_rows(server: SheetsServer, title: str) -> list[list[Any]]:
    rows = server.rows(SHEET_ID, title)
    assert rows[0] == list(COLUMNS)
    return rows[1:]


def test_one_worksheet_per_symbol_and_interval_with_rows_upserted(
    server: SheetsServer, writer: SheetsWriter
) -> None:
    writer.upsert([candle("BTCUSDT", "1m", m, 100 + m) for m in (2, 0, 1)])
    writer.upsert([candle("ETHUSDT", "1m", 0, 10), candle("BTCUSDT", "5m", 0, 50)])
    writer.upsert([candle("BTCUSDT", "1m", 1, 999), candle("BTCUSDT", "1m", 3, 103)])
    assert server.titles(SHEET_ID) == ["Sheet1", "BTCUSDT 1m", "BTCUSDT 5m", "ETHUSDT 1m"]
    rows = data_rows(server, worksheet_title("BTCUSDT", "1m"))
    assert [(r[0], r[COLUMNS.index("close")]) for r in rows] == [
        ("2025-11-29T20:00:00.000Z", 100),
        ("2025-11-29T20:01:00.000Z", 999),
        ("2025-11-29T20:02:00.000Z", 102),
        ("2025-11-29T20:03:00.000Z", 103),
    ]
    assert rows[0][COLUMNS.index("realized_volatility")] == ""
    # Batched: per worksheet one update call and one append call at most, plus the index read.
    writes = [c for c in server.calls if c.method in ("PUT", "POST") and "values" in c.path]
    assert len(writes) <= 2 + 2 + 2 + 3  # headers (3) + the three upserts


def test_a_fresh_writer_finds_existing_rows_instead_of_appending(
    server: SheetsServer, writer: SheetsWriter, tmp_path: Path
) -> None:
    writer.upsert([candle("BTCUSDT", "1m", m, m) for m in range(3)])
    key = service_account_file(server.token_uri, str(tmp_path / "again.json"))
    restarted = SheetsWriter(open_spreadsheet(key, SHEET_ID, api_url=server.url))
    restarted.upsert([candle("BTCUSDT", "1m", m, 50 + m) for m in range(4)])
    rows = data_rows(server, "BTCUSDT 1m")
    assert [r[COLUMNS.index("close")] for r in rows] == [50, 51, 52, 53]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retryable(
    server: SheetsServer, writer: SheetsWriter, status: int
) -> None:
    writer.upsert([candle("BTCUSDT", "1m", 0, 1)])
    server.fail_next(status)
    with pytest.raises(gspread.exceptions.APIError) as failure:
        writer.upsert([candle("BTCUSDT", "1m", 1, 2)])
    assert is_retryable(failure.value)
    writer.forget()
    writer.upsert([candle("BTCUSDT", "1m", 1, 2)])
    assert len(data_rows(server, "BTCUSDT 1m")) == 2


def test_an_answer_lost_after_the_append_does_not_duplicate_rows(
    server: SheetsServer, writer: SheetsWriter
) -> None:
    writer.upsert([candle("BTCUSDT", "1m", 0, 1)])
    server.fail_next(500, after_apply=True)  # Sheets appended, the answer was lost
    with pytest.raises(gspread.exceptions.APIError):
        writer.upsert([candle("BTCUSDT", "1m", 1, 2)])
    writer.forget()
    writer.upsert([candle("BTCUSDT", "1m", 1, 2)])
    assert [r[0] for r in data_rows(server, "BTCUSDT 1m")] == [
        "2025-11-29T20:00:00.000Z",
        "2025-11-29T20:01:00.000Z",
    ]


def test_client_errors_are_not_retryable(server: SheetsServer, writer: SheetsWriter) -> None:
    server.fail_next(403)
    with pytest.raises(gspread.exceptions.APIError) as failure:
        writer.upsert([candle("BTCUSDT", "1m", 0, 1)])
    assert not is_retryable(failure.value)


def test_outbox_json_keeps_utc_times() -> None:
    row = {
        "symbol": "BTCUSDT",
        "window_start": 1_764_446_400_000,
        "window_end": 1,
        "event_time": 2,
        "ingest_time": 3,
    }
    (back,) = from_json(to_json([row]))
    assert back["window_start"] == T0
    assert back["symbol"] == "BTCUSDT"


def test_backoff_doubles_up_to_a_cap() -> None:
    backoff = Backoff(initial=1, maximum=8, jitter=lambda: 1.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert Backoff(initial=4, maximum=8, jitter=lambda: 0.0).delay(1) == 2


def test_sheets_failures_are_a_counter_that_follows_the_outbox_running_total() -> None:
    metrics = AggregateMetrics()
    for failures, pending in ((0, 1), (2, 3), (2, 3), (5, 0)):
        metrics.sheets_stats(SyncStats(failures=failures, pending_files=pending))
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE cryptopipe_aggregate_sheets_write_failures_total counter" in text
    assert "cryptopipe_aggregate_sheets_write_failures_total 5.0" in text
    assert "cryptopipe_aggregate_sheets_pending_batches 0.0" in text
