"""The streaming aggregation on the real Kafka, Spark, HDFS and Hive metastore, against an
independent pandas computation over the same randomized trades (several symbols, out of order,
duplicated, late, and exactly at the watermark). Each phase of trades is produced, then
processed by one run of the query from its HDFS checkpoint (availableNow): one micro-batch per
phase, so the reference knows each batch's watermark."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aggregate_support import (
    Reference,
    Scratch,
    TradeStream,
    consume_all,
    create_topics,
    mismatches,
    produce,
    random_stream,
    reference,
    unique_symbols,
)
from pyspark.sql import SparkSession

from cryptopipe_jobs.aggregate import main as aggregate_main
from cryptopipe_jobs.aggregate.progress import figures
from cryptopipe_jobs.sinks.batch_writer import BatchWriter
from cryptopipe_jobs.sinks.candle_dedupe import dedupe
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.sinks.hive_ddl import apply_ddl, ddl_variables
from cryptopipe_schemas import topics
from cryptopipe_schemas.registry import SchemaIds
from cryptopipe_schemas.spec import CryptoPipelineSpec, parse_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INTERVALS = ["1m", "5m"]
WATERMARK = "20s"


def make_spec(symbol: str, tag: str) -> CryptoPipelineSpec:
    return parse_spec(
        {
            "symbol": symbol,
            "intervals": INTERVALS,
            "watermark": WATERMARK,
            "model": {"interval": "1m"},
            "sinks": {"hdfs": {"path": f"/it/{tag}"}, "hive": {"database": tag}},
        }
    )


@dataclass
class Aggregated:
    options: aggregate_main.AggregateOptions
    stream: TradeStream
    expected: Reference
    late_counted: int
    invalid_counted: int
    batches: int
    seed: int
    # Each phase's last batch: how far behind its topics Spark's Kafka source said it was.
    behind_after_phase: list[int | None]


def run_phase(spark: SparkSession, options: aggregate_main.AggregateOptions) -> list[Any]:
    fs = HadoopFs(spark, options.base)
    targets = aggregate_main.sink_targets(options, fs, SchemaIds.derived())
    query = aggregate_main.start_query(spark, options, BatchWriter(spark, fs, targets))
    query.awaitTermination(timeout=300)
    assert query.exception() is None, query.exception()
    return list(query.recentProgress)


@pytest.fixture(scope="module")
def aggregated(
    spark: SparkSession, spark_env: dict[str, str], kafka_bootstrap: str
) -> Iterator[Aggregated]:
    seed = int(time.time())
    rng = random.Random(seed)
    symbols = unique_symbols(3)
    tag = f"agg_{uuid.uuid4().hex[:8]}"
    specs = [make_spec(symbol, tag) for symbol in symbols]
    options = aggregate_main.AggregateOptions(
        specs=specs,
        bootstrap_servers=kafka_bootstrap,
        hdfs_url=spark_env["CRYPTOPIPE_HDFS_URL"],
        metastore_uri=spark_env["CRYPTOPIPE_HIVE_METASTORE_URI"],
        available_now=True,
    )
    scratch = Scratch(
        spark,
        kafka_bootstrap,
        topics=[*(topics.trades(s) for s in symbols), *aggregate_main.candle_topics(options)],
        paths=[options.base],
        databases=[tag],
    )
    try:
        create_topics(kafka_bootstrap, [topics.trades(s) for s in symbols])
        apply_ddl(spark, ROOT / "hive", ddl_variables(specs[0], options.hdfs_url))
        aggregate_main.ensure_candle_topics(options)
        stream = random_stream(rng, symbols, phases=4, watermark_ms=20_000)
        progress = []
        behind_after_phase = []
        for index, phase in enumerate(stream.phases):
            garbage = stream.garbage if index == 1 else 0
            produce(kafka_bootstrap, phase, garbage=garbage, symbol=symbols[0])
            ran = run_phase(spark, options)
            behind_after_phase.append(figures(ran[-1]).offsets_behind if ran else None)
            progress += ran
        batches = [figures(p) for p in progress]
        yield Aggregated(
            options=options,
            stream=stream,
            expected=reference(stream, INTERVALS, WATERMARK),
            late_counted=sum(b.late_trades for b in batches),
            invalid_counted=sum(b.invalid for b in batches),
            batches=len(batches),
            seed=seed,
            behind_after_phase=behind_after_phase,
        )
    finally:
        scratch.cleanup()


def parquet_rows(
    spark: SparkSession, options: aggregate_main.AggregateOptions
) -> list[dict[str, Any]]:
    return [r.asDict() for r in spark.read.parquet(f"{options.base}/candles").collect()]


def test_candles_equal_an_independent_pandas_computation(
    spark: SparkSession, aggregated: Aggregated
) -> None:
    rows = parquet_rows(spark, aggregated.options)
    assert len(aggregated.expected.candles) > 20
    assert mismatches(rows, aggregated.expected.candles) == [], f"seed {aggregated.seed}"
    # Partitioned by the UTC date of the window start.
    assert {str(r["date"]) for r in rows} == {"2025-11-29"}


def test_late_and_invalid_records_are_counted(aggregated: Aggregated) -> None:
    assert aggregated.expected.late_trades > 0
    assert aggregated.late_counted == aggregated.expected.late_trades, f"seed {aggregated.seed}"
    assert aggregated.invalid_counted == aggregated.stream.garbage


def test_a_drained_query_reports_no_offsets_behind(aggregated: Aggregated) -> None:
    # availableNow reads every phase to its end: the source's own figure says so.
    assert aggregated.behind_after_phase == [0] * len(aggregated.stream.phases)


def test_kafka_candles_decode_and_dedupe_to_the_reference(
    aggregated: Aggregated, kafka_bootstrap: str
) -> None:
    names = aggregate_main.candle_topics(aggregated.options)
    expected = len(aggregated.expected.candles)
    records = consume_all(kafka_bootstrap, names, expected)
    assert len(records) >= expected
    unique = dedupe(records + records[:5])  # a re-run batch repeats candles: readers dedupe
    assert mismatches([dict(r) for r in unique], aggregated.expected.candles) == []


FRESH_SESSION = textwrap.dedent(
    """
    import json, sys
    from cryptopipe_jobs.spark_session import SparkSettings, create_session
    spark = create_session(SparkSettings(**json.loads(sys.argv[1])))
    rows = spark.sql(f"SELECT * FROM {sys.argv[2]}").collect()
    print(json.dumps([r.asDict() for r in rows], default=str))
    spark.stop()
    """
)


def test_hive_query_from_a_fresh_session_equals_the_parquet_rows(
    spark: SparkSession, spark_env: dict[str, str], aggregated: Aggregated
) -> None:
    settings = {
        "app_name": "fresh-hive-reader",
        "jars": spark_env["CRYPTOPIPE_SPARK_JARS"].split(","),
        "default_fs": spark_env["CRYPTOPIPE_HDFS_URL"],
        "hive_metastore_uri": spark_env["CRYPTOPIPE_HIVE_METASTORE_URI"],
        "master": "local[1]",
    }
    table = f"{aggregated.options.spec.sinks.hive.database}.candles"
    result = subprocess.run(
        [sys.executable, "-c", FRESH_SESSION, json.dumps(settings), table],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "TZ": "UTC"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from_hive = json.loads(result.stdout.strip().splitlines()[-1])
    from_parquet = json.loads(json.dumps(parquet_rows(spark, aggregated.options), default=str))

    def key(row: dict[str, Any]) -> str:
        return json.dumps(row, sort_keys=True)

    assert len(from_hive) == len(aggregated.expected.candles)
    assert sorted(map(key, from_hive)) == sorted(map(key, from_parquet))
