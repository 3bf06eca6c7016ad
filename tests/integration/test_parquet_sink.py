"""The parquet sink on the test bed's HDFS: a re-run batch replaces what its first run left."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from pyspark.sql import DataFrame, SparkSession

from cryptopipe_jobs.sinks import parquet
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs

pytestmark = pytest.mark.integration

DAY_1 = dt.datetime(2026, 11, 1, 23, 59, tzinfo=dt.UTC)
DAY_2 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def layout(spark: SparkSession) -> Iterator[parquet.ParquetLayout]:
    base = f"/test-parquet-sink/{uuid.uuid4().hex}"
    yield parquet.ParquetLayout(base)
    HadoopFs(spark, base).delete(base)


def candles(spark: SparkSession, rows: list[tuple[str, str, dt.datetime, float]]) -> DataFrame:
    return spark.createDataFrame(
        rows, "symbol string, interval string, window_start timestamp, close double"
    )


def stored(spark: SparkSession, layout: parquet.ParquetLayout) -> list[tuple[str, str, str, float]]:
    rows = spark.read.parquet(layout.table).collect()
    return sorted((r.symbol, r.interval, str(r.date), r.close) for r in rows)


def test_a_rerun_batch_replaces_the_files_its_interrupted_run_moved_in(
    spark: SparkSession, layout: parquet.ParquetLayout
) -> None:
    fs = HadoopFs(spark, layout.base)
    first = candles(spark, [("BTCUSDT", "1m", DAY_1, 1.0)])
    rerun = candles(spark, [("BTCUSDT", "1m", DAY_1, 2.0), ("BTCUSDT", "1m", DAY_2, 3.0)])
    assert parquet.write_batch(fs, layout, first, batch_id=7) == [
        parquet.Partition("BTCUSDT", "1m", "2026-11-01")
    ]
    # Batch 8's first run moved one file into a partition, then the driver died.
    parquet.write_batch(fs, layout, candles(spark, [("BTCUSDT", "1m", DAY_1, 2.0)]), batch_id=8)
    day_1 = f"{layout.table}/symbol=BTCUSDT/interval=1m/date=2026-11-01"
    assert len(fs.glob(f"{day_1}/batch-000000000008-*")) == 1

    partitions = parquet.write_batch(fs, layout, rerun, batch_id=8)

    assert partitions == [
        parquet.Partition("BTCUSDT", "1m", "2026-11-01"),
        parquet.Partition("BTCUSDT", "1m", "2026-11-02"),
    ]
    assert stored(spark, layout) == [
        ("BTCUSDT", "1m", "2026-11-01", 1.0),
        ("BTCUSDT", "1m", "2026-11-01", 2.0),
        ("BTCUSDT", "1m", "2026-11-02", 3.0),
    ]
    assert not fs.exists(layout.staging(8))
