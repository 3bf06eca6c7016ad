"""Exactly once across a SIGKILL of the driver: a separate driver process aggregates while trades
arrive, is killed in the middle of a micro-batch (its staging folder exists: the batch is in the
offset log but not committed), and a new driver resumes from the HDFS checkpoint. Meanwhile
Google Sheets (the local Sheets server) is down: parquet and Hive keep going, and the rows are
caught up once Sheets is back. At the end parquet, Hive and Sheets hold every final candle of
the pandas reference exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aggregate_support import (
    Driver,
    Scratch,
    as_utc,
    create_topics,
    mismatches,
    produce,
    random_stream,
    reference,
    unique_symbols,
    wait_for,
)
from fakes.sheets_server import SheetsServer, service_account_file
from monitoring_support import dashboard_queries, series_names
from net_support import free_port, scrape
from pyspark.sql import SparkSession

from cryptopipe_jobs.aggregate.pool import group_key
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.sinks.sheets import COLUMNS, cell, worksheet_title
from cryptopipe_schemas import topics
from cryptopipe_schemas.spec import parse_spec, to_mapping
from cryptopipe_schemas.storage import checkpoint_location

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INTERVALS = ["1m", "5m"]
WATERMARK = "20s"
SHEET_ID = "restart-sheet"


@pytest.fixture
def sheets() -> Iterator[SheetsServer]:
    server = SheetsServer().start()
    server.create(SHEET_ID)
    yield server
    server.stop()


@pytest.fixture
def scratch(spark: SparkSession, kafka_bootstrap: str) -> Iterator[Scratch]:
    created = Scratch(spark, kafka_bootstrap)
    yield created
    created.cleanup()


def test_sigkill_mid_batch_and_restart_keeps_every_candle_once(
    spark: SparkSession,
    spark_env: dict[str, str],
    kafka_bootstrap: str,
    sheets: SheetsServer,
    scratch: Scratch,
    tmp_path: Path,
) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    symbols = unique_symbols(2)
    tag = f"agg_restart_{uuid.uuid4().hex[:8]}"
    scratch.databases.append(tag)
    scratch.paths.append(f"/it/{tag}")
    scratch.topics += [
        name
        for symbol in symbols
        for name in (topics.trades(symbol), *(topics.candles(i, symbol) for i in INTERVALS))
    ]
    spec = parse_spec(
        {
            "symbol": symbols[0],
            "intervals": INTERVALS,
            "watermark": WATERMARK,
            "model": {"interval": "1m"},
            "sinks": {
                "hdfs": {"path": f"/it/{tag}"},
                "hive": {"database": tag},
                "sheets": {
                    "enabled": True,
                    "spreadsheetId": SHEET_ID,
                    "secretRef": {"name": "sheets"},
                },
            },
        }
    )
    spec_files = []
    for symbol in symbols:
        path = tmp_path / f"{symbol}.json"
        path.write_text(json.dumps({**to_mapping(spec), "symbol": symbol}))
        spec_files += ["--spec", str(path)]
    hdfs_url = spark_env["CRYPTOPIPE_HDFS_URL"]
    base = f"{hdfs_url}/it/{tag}"
    create_topics(kafka_bootstrap, [topics.trades(s) for s in symbols])
    key = service_account_file(sheets.token_uri, str(tmp_path / "sa.json"))
    args = [
        *spec_files,
        "--bootstrap-servers", kafka_bootstrap,
        "--hdfs-url", hdfs_url,
        "--metastore-uri", spark_env["CRYPTOPIPE_HIVE_METASTORE_URI"],
        "--sheets-credentials", key,
        "--sheets-api-url", sheets.url,
        "--trigger-interval", "1 second",
        "--jars", spark_env["CRYPTOPIPE_SPARK_JARS"],
        # The tables come from the aggregator itself, as in a cluster (idempotent on restart).
        "--hive-ddl-dir", str(ROOT / "hive"),
    ]  # fmt: skip

    # Out of order by less than the watermark, so no trade is late however batches fall.
    stream = random_stream(rng, symbols, phases=6, watermark_ms=20_000, late=False)
    for phase in stream.phases:
        phase.sort(key=lambda t: t["event_time"].timestamp() + rng.uniform(0, 10))
    expected = reference(stream, INTERVALS, WATERMARK).candles
    fs = HadoopFs(spark, base)

    def table_files() -> list[str]:
        return [
            p for p in fs.list_files(f"{base}/candles", recursive=True) if p.endswith(".parquet")
        ]

    def chunks(phase: list[dict[str, Any]], parts: int = 3) -> list[list[dict[str, Any]]]:
        size = len(phase) // parts + 1
        return [phase[i : i + size] for i in range(0, len(phase), size)]

    first = Driver(args, tmp_path / "driver-1.log")
    try:
        for phase in stream.phases[:2]:
            for chunk in chunks(phase):
                produce(kafka_bootstrap, chunk)
        wait_for(lambda: bool(table_files()) or not first.alive(), 240, "the first candles")
        assert first.alive(), first.tail()

        sheets.outage(503)
        files_before_outage = len(table_files())
        pending = [chunk for phase in stream.phases[2:] for chunk in chunks(phase, parts=6)]
        killed_batch = None
        while pending and killed_batch is None:
            produce(kafka_bootstrap, pending.pop(0))
            deadline = time.monotonic() + 8
            # Armed once a batch was stored while Sheets was down: the outage stalls nothing.
            while len(table_files()) == files_before_outage and time.monotonic() < deadline:
                time.sleep(0.2)
            while (
                killed_batch is None
                and len(table_files()) > files_before_outage
                and time.monotonic() < deadline
            ):
                staged = fs.glob(f"{base}/_staging/candles/*/batch=*")
                if staged:
                    os.kill(first.process.pid, signal.SIGKILL)
                    killed_batch = int(staged[0].rsplit("=", 1)[1])
                time.sleep(0.02)
        assert killed_batch is not None, "no batch was caught mid-write"
        first.process.wait(timeout=30)
    finally:
        if first.alive():
            first.process.kill()
    # The pool's one query (all its symbols agree on intervals and watermark).
    checkpoint = f"{checkpoint_location(base, 'aggregate')}/{group_key(spec)}"
    assert fs.exists(f"{checkpoint}/offsets/{killed_batch}")
    assert not fs.exists(f"{checkpoint}/commits/{killed_batch}"), "killed after the commit"
    assert len(table_files()) > files_before_outage, "parquet stalled while Sheets was down"
    assert fs.list_files(f"{base}/_sheets_outbox"), "nothing waited for Sheets"

    metrics_port, spark_ui_port = free_port(), free_port()
    served = ["--metrics-port", str(metrics_port), "--spark-ui-port", str(spark_ui_port)]
    second = Driver([*args, *served], tmp_path / "driver-2.log")
    try:
        wait_for(
            lambda: fs.exists(f"{checkpoint}/commits/{killed_batch}") or not second.alive(),
            240,
            "the re-run of the killed batch",
        )
        assert second.alive(), second.tail()
        for chunk in pending:
            produce(kafka_bootstrap, chunk)
        sheets.restore()

        def sheet_keys() -> int:
            return sum(
                max(0, len(sheets.rows(SHEET_ID, t)) - 1)
                for t in sheets.titles(SHEET_ID)
                if t != "Sheet1"
            )

        def parquet_count() -> int:
            return spark.read.parquet(f"{base}/candles").count() if table_files() else 0

        wait_for(
            lambda: (
                (parquet_count() >= len(expected) and sheet_keys() >= len(expected))
                or not second.alive()
            ),
            300,
            "every final candle in parquet and Sheets",
            poll=2,
        )
        assert second.alive(), second.tail()
        ours = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        spark_own = scrape(f"http://127.0.0.1:{spark_ui_port}/metrics/prometheus")
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=120) == 0, second.tail()
    finally:
        if second.alive():
            second.process.kill()

    rows = [r.asDict() for r in spark.read.parquet(f"{base}/candles").collect()]
    assert mismatches(rows, expected) == [], f"seed {seed}"
    spark.sql(f"REFRESH TABLE {tag}.candles")
    assert spark.table(f"{tag}.candles").count() == len(expected)

    for (symbol, interval), group in expected.groupby(["symbol", "interval"]):
        sheet = sheets.rows(SHEET_ID, worksheet_title(symbol, interval))
        assert sheet[0] == list(COLUMNS)
        keys = [row[0] for row in sheet[1:]]
        assert len(keys) == len(set(keys)), f"duplicate rows in {symbol} {interval}"
        want = {cell(as_utc(r["window_start"])): r for r in group.to_dict("records")}
        assert set(keys) == set(want)
        for row in sheet[1:]:
            assert row[COLUMNS.index("trade_count")] == want[row[0]]["trade_count"]
            assert row[COLUMNS.index("close")] == pytest.approx(want[row[0]]["close"], rel=1e-12)
    assert sheets.failed_calls() > 0  # the outage was seen, retried and caught up

    batches = [
        json.loads(line)
        for log in ("driver-1.log", "driver-2.log")
        for line in (tmp_path / log).read_text().splitlines()
        if line.startswith("{") and '"message": "batch"' in line
    ]
    assert batches and all(b["late_trades"] == 0 for b in batches)

    # The second driver's series: ours per query, and Spark's own through its servlet, under
    # the application's name (not its id, new at every submission).
    query = f"cryptopipe-aggregate-{group_key(spec)}"
    assert ours[f'cryptopipe_aggregate_batch_duration_seconds_count{{query="{query}"}}'] > 0
    assert ours[f'cryptopipe_aggregate_offsets_behind_latest{{query="{query}"}}'] >= 0
    assert ours[f'cryptopipe_aggregate_last_progress_timestamp_seconds{{query="{query}"}}'] > 0
    assert "cryptopipe_aggregate_sheets_write_failures_total" in ours
    spark_names = {key.split("{")[0] for key in spark_own}
    assert any(n.startswith("metrics_cryptopipe_aggregate_driver_") for n in spark_names), sorted(
        spark_names
    )[:20]
    streaming = [n for n in spark_names if "spark_streaming" in n]
    assert streaming, sorted(spark_names)[:40]
    # What the chart's Grafana dashboard reads from Spark is what a real driver serves.
    wanted = {n for n in series_names(dashboard_queries()) if n.startswith("metrics_")}
    assert wanted and wanted <= spark_names, sorted(wanted - spark_names)
