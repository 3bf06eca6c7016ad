"""One driver for a pool whose members change while it runs (real Kafka, Spark and HDFS).

The driver reads its members from a folder, as it reads a ConfigMap volume in a cluster. Three
symbols: A is a member throughout; C joins later (its topic is created, and its first trades are
in it, before the driver learns of it); B leaves, then its topic is deleted. At the end A's and
C's candles on HDFS equal the pandas reference over their trades, each exactly once: C got every
candle from its first trade, and A was neither recomputed nor interrupted by the restarts that
C's join and B's deleted topic caused. B's candles stop when it leaves, and are never partial.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aggregate_support import (
    Driver,
    Scratch,
    TradeStream,
    create_topics,
    delete_topics,
    keyed,
    mismatches,
    produce,
    random_stream,
    reference,
    unique_symbols,
    wait_for,
)
from pyspark.sql import SparkSession

from cryptopipe_jobs.aggregate.pool import group_key
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_schemas import topics
from cryptopipe_schemas.spec import parse_spec, to_mapping

pytestmark = pytest.mark.integration

INTERVALS = ["1m", "5m"]
WATERMARK = "20s"
PHASES = 8
C_JOINS = 3  # C's trades start in this phase
B_LEAVES = 6  # B's spec is gone before this phase (its trades of this phase are still sent)
B_TOPIC_DELETED = 7  # and its topic before this one


@pytest.fixture
def scratch(spark: SparkSession, kafka_bootstrap: str) -> Iterator[Scratch]:
    created = Scratch(spark, kafka_bootstrap)
    yield created
    created.cleanup()


def driver_lines(log: Path, message: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("{") and f'"message": "{message}"' in line
    ]


def test_members_join_and_leave_a_running_pool_without_loss_or_recomputation(
    spark: SparkSession,
    spark_env: dict[str, str],
    kafka_bootstrap: str,
    scratch: Scratch,
    tmp_path: Path,
) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    a, b, c = unique_symbols(3)
    tag = f"agg_pool_{uuid.uuid4().hex[:8]}"
    scratch.paths.append(f"/it/{tag}")
    scratch.topics += [topics.trades(s) for s in (a, b, c)]
    spec = parse_spec(
        {
            "symbol": a,
            "intervals": INTERVALS,
            "watermark": WATERMARK,
            "model": {"interval": "1m"},
            "sinks": {
                "hdfs": {"path": f"/it/{tag}"},
                "hive": {"enabled": False},
                "kafka": {"enabled": False},
            },
        }
    )
    members = tmp_path / "members"
    members.mkdir()

    def join(symbol: str) -> None:
        staged = tmp_path / f"{symbol}.json"
        staged.write_text(json.dumps({**to_mapping(spec), "symbol": symbol}))
        staged.rename(members / f"{symbol}.json")  # whole, as a ConfigMap volume updates

    def leave(symbol: str) -> None:
        (members / f"{symbol}.json").unlink()

    stream = random_stream(rng, [a, b, c], phases=PHASES, watermark_ms=20_000, late=False)
    phases = [
        [
            t
            for t in phase
            if not (t["symbol"] == c and index < C_JOINS)
            and not (t["symbol"] == b and index >= B_TOPIC_DELETED)
        ]
        for index, phase in enumerate(stream.phases)
    ]
    expected = reference(TradeStream(phases, garbage=0), INTERVALS, WATERMARK).candles
    hdfs_url = spark_env["CRYPTOPIPE_HDFS_URL"]
    base = f"{hdfs_url}/it/{tag}"
    fs = HadoopFs(spark, base)

    def written() -> list[dict[str, Any]]:
        files = fs.list_files(f"{base}/candles", recursive=True)
        if not any(p.endswith(".parquet") for p in files):
            return []
        return [r.asDict() for r in spark.read.parquet(f"{base}/candles").collect()]

    def final_by(phase: int) -> set[tuple[str, str, Any]]:
        """The candles final once `phase` is processed (by the reference's rule)."""
        upto = reference(TradeStream(phases[: phase + 1], garbage=0), INTERVALS, WATERMARK)
        return set(keyed(upto.candles.to_dict("records")))

    def has_all(wanted: set[tuple[str, str, Any]]) -> bool:
        return wanted <= set(keyed(written()))

    create_topics(kafka_bootstrap, [topics.trades(a), topics.trades(b)])
    join(a)
    join(b)
    log = tmp_path / "driver.log"
    args = [
        "--spec-dir", str(members),
        "--membership-poll-seconds", "1",
        "--bootstrap-servers", kafka_bootstrap,
        "--hdfs-url", hdfs_url,
        "--trigger-interval", "1 second",
        "--jars", spark_env["CRYPTOPIPE_SPARK_JARS"],
    ]  # fmt: skip
    driver = Driver(args, log)
    try:
        for index, phase in enumerate(phases):
            if index == C_JOINS:
                # C's topic and first trades exist before the driver knows of C.
                create_topics(kafka_bootstrap, [topics.trades(c)])
                produce(kafka_bootstrap, [t for t in phase if t["symbol"] == c])
                join(c)
                wait_for(
                    lambda: (
                        any(
                            topics.trades(c) in line["topics"]
                            for line in driver_lines(log, "pool query started")
                        )
                        or not driver.alive()
                    ),
                    120,
                    "the query to take C in",
                )
                phase = [t for t in phase if t["symbol"] != c]
            if index == B_LEAVES:
                leave(b)
                time.sleep(3)  # three membership polls: B's candles are no longer written
            if index == B_TOPIC_DELETED:
                delete_topics(kafka_bootstrap, [topics.trades(b)])
            produce(kafka_bootstrap, phase)
            if index < B_LEAVES:
                wanted = final_by(index)
            else:
                wanted = {k for k in final_by(index) if k[0] != b}
            wait_for(
                lambda wanted=wanted: has_all(wanted) or not driver.alive(),  # type: ignore[misc]
                240,
                f"phase {index}",
                poll=2,
            )
            assert driver.alive(), driver.tail()
    finally:
        driver.process.terminate()
        driver.process.wait(timeout=120)

    rows = written()
    got = keyed(rows)  # raises on a candle stored twice
    kept = [r for r in rows if r["symbol"] != b]
    assert mismatches(kept, expected[expected["symbol"] != b]) == [], f"seed {seed}"
    # B: every candle final before it left, exact; none after, and none partial.
    b_rows = [r for r in rows if r["symbol"] == b]
    b_expected = expected[expected["symbol"] == b]
    assert {k for k in final_by(B_LEAVES - 1) if k[0] == b} <= {k for k in got if k[0] == b}
    b_matching = b_expected[b_expected.apply(
        lambda r: (r["symbol"], r["interval"], r["window_start"]) in got, axis=1
    )]  # fmt: skip
    assert mismatches(b_rows, b_matching) == [], f"seed {seed}"
    assert len(b_rows) < len(b_expected), "B's candles went on after it left"

    # One query throughout (same intervals and watermark), restarted for C's topic and for B's
    # deleted topic (lenient once, then strict), and never from batch 0 again.
    started = driver_lines(log, "pool query started")
    assert {line["query"] for line in started} == {group_key(spec)}
    assert len(started) >= 4, [line["topics"] for line in started]
    assert any("no longer exist" in line for line in log.read_text().splitlines())
    batches = [line["batch_id"] for line in driver_lines(log, "batch")]
    assert batches == sorted(batches), "a restart began the checkpoint again"
