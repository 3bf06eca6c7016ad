"""Pure parts of the sinks: Hive DDL rendering, partition statements, candle deduplication."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cryptopipe_jobs.sinks.candle_dedupe import CandleDeduper, dedupe
from cryptopipe_jobs.sinks.hive import add_partitions_sql
from cryptopipe_jobs.sinks.hive_ddl import ddl_variables, render, statements
from cryptopipe_jobs.sinks.parquet import Partition
from cryptopipe_schemas.spec import parse_spec

pytestmark = pytest.mark.unit
HIVE = Path(__file__).resolve().parents[2] / "hive"
T0 = dt.datetime(2025, 11, 29, 20, 0, tzinfo=dt.UTC)


def test_every_hql_file_renders_to_statements_without_placeholders() -> None:
    spec = parse_spec({"symbol": "BTCUSDT", "sinks": {"hive": {"database": "crypto_x"}}})
    variables = ddl_variables(spec, "hdfs://nn:8020/")
    assert variables == {"database": "crypto_x", "hdfs_base": "hdfs://nn:8020/cryptopipe"}
    rendered = [
        s for p in sorted(HIVE.glob("*.hql")) for s in statements(render(p.read_text(), variables))
    ]
    assert any(
        "crypto_x.candles" in s and "'hdfs://nn:8020/cryptopipe/candles'" in s for s in rendered
    )
    assert any("crypto_x.forecasts" in s for s in rendered)
    assert all("${" not in s and not s.endswith(";") for s in rendered)
    assert all("IF NOT EXISTS" in s for s in rendered)


def test_unknown_variables_are_refused() -> None:
    with pytest.raises(KeyError, match="nope"):
        render("CREATE DATABASE ${nope}", {"database": "x"})


def test_partitions_are_added_idempotently_in_one_statement() -> None:
    sql = add_partitions_sql(
        "db.candles",
        [Partition("BTCUSDT", "1m", "2025-11-29"), Partition("BTC'X", "5m", "2025-11-30")],
    )
    assert sql == (
        "ALTER TABLE db.candles ADD IF NOT EXISTS "
        "PARTITION (symbol='BTCUSDT', `interval`='1m', `date`='2025-11-29') "
        "PARTITION (symbol='BTC\\'X', `interval`='5m', `date`='2025-11-30')"
    )
    assert add_partitions_sql("db.candles", []) is None


def record(symbol: str, interval: str, minute: int, close: float = 1.0) -> dict[str, object]:
    return {
        "symbol": symbol,
        "interval": interval,
        "window_start": T0 + dt.timedelta(minutes=minute),
        "close": close,
    }


def test_dedupe_keeps_the_first_copy_of_each_window() -> None:
    records = [
        record("A", "1m", 0, 1),
        record("A", "1m", 1),
        record("A", "1m", 0, 2),
        record("A", "5m", 0),
        record("B", "1m", 0),
    ]
    kept = dedupe(records)
    assert [(r["symbol"], r["interval"], r["close"]) for r in kept] == [
        ("A", "1m", 1),
        ("A", "1m", 1.0),
        ("A", "5m", 1.0),
        ("B", "1m", 1.0),
    ]


def test_deduper_memory_is_bounded_per_symbol_and_interval() -> None:
    deduper = CandleDeduper(retention=dt.timedelta(minutes=10))
    assert all(deduper.accept(record("A", "1m", m)) for m in range(100))
    assert not deduper.accept(record("A", "1m", 99))  # a repeat
    assert not deduper.accept(record("A", "1m", 5))  # long gone: delivered before
    assert deduper.accept(record("A", "1h", 0))  # another interval has its own horizon
    assert len(deduper._seen[("A", "1m")]) <= 11
