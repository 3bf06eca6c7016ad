"""Aggregation benchmark: sustained throughput against a count-only query, and the latency from
a window's close (plus the watermark) to its candle on the Kafka topic, at fixed input rates.

All throughput figures come from the same run on the same topic: trades preloaded into Kafka,
each query drains them from its own checkpoint in micro-batches of --batch-records, and the
rate is input rows over the batches' trigger time (query start-up excluded). Ours: decode,
watermark, dedupe, candles for every interval, parquet on HDFS and the Kafka candle topics.
Reference: the same Kafka source, each batch only counted. Two more references bound what any
aggregation of these records can reach: decode-only strips the header, decodes the Avro, keeps
the valid trades (what the job does before its first stateful operator) and counts them;
lightest-aggregation adds the least a windowed candle needs, a watermark and one stateful
aggregation (trades per symbol and 1-second window: count and summed quantity), each batch's
finalized windows counted, no sink.

The JVM's JIT compiler is far from done after one pass over the queries: in a fresh JVM the
compiler threads used more CPU than the tasks did during ours, and every rate kept rising for
about five passes. So --warmup-rounds full rounds (every query, --records trades each) run
first, unrecorded, and then --rounds measured rounds; the round with the median ratio is
reported, with every round's figures beside it. Each batch's time breakdown (trigger phases,
stateful operators) is recorded for ours.

Latency: trades are produced at a fixed rate with event time = now (a separate process paces
them); the job runs with a 1-second trigger; for each final candle, latency = the candle
record's Kafka timestamp - (window_end + watermark). Intervals 1s and 1m, watermark 2s, so a
run yields one latency sample per second.

Trades are assembled from pre-encoded pieces (see TradeEncoder) by one producer process per
20,000 trades/s; on 2 shared cores the producers compete with Spark for CPU, so the achieved
input rate is printed beside the target. The machine's load average is recorded before and
after (other work on a shared machine slows every figure). The trades are synthetic (a load
test). Everything a run creates (topics, HDFS folders) is deleted at its end.

    uv run python bench/aggregate.py [--rates 2000,10000,50000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cryptopipe_jobs.aggregate import main as aggregate_main
from cryptopipe_jobs.aggregate import pipeline
from cryptopipe_jobs.aggregate import trades as trade_source
from cryptopipe_jobs.sinks.batch_writer import BatchWriter
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.spark_session import SparkSettings, create_session
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import decode, encode, encode_key
from cryptopipe_schemas.durations import parse_duration
from cryptopipe_schemas.registry import SchemaIds
from cryptopipe_schemas.spec import parse_spec
from cryptopipe_schemas.storage import checkpoint_location
from cryptopipe_testbed.components import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "aggregate.json"
INTERVALS = ["1s", "1m"]
WATERMARK = "2s"


def testbed_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name in ("kafka", "hdfs", "spark"):
        component = BY_NAME[name]
        if not component.health().healthy:
            raise SystemExit(f"test bed component {name} is not running: scripts/testbed up")
        env.update(component.env())
    return env


def trade(symbol: str, trade_id: int, ms: int, rng: random.Random) -> dict[str, Any]:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return {
        "exchange": "binance",
        "symbol": symbol,
        "trade_id": trade_id,
        "price": Decimal(97_000 + rng.randint(-50_000, 50_000)) / 100,
        "quantity": Decimal(rng.randint(1, 10**7)) / Decimal(10**8),
        "buyer_is_maker": rng.random() < 0.5,
        "trade_time": moment,
        "event_time": moment,
        "ingest_time": moment,
    }


def zigzag_varint(value: int) -> bytes:
    """Avro's encoding of a long."""
    number = (value << 1) ^ (value >> 63)
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


class TradeEncoder:
    """Trade records at the rates Python cannot encode one by one: the codec encodes a pool of
    trades once (trade id and times 0, each one byte), and each record is assembled from its
    pieces: the bytes before the trade id, the trade id, price to maker, the three times (the
    last fields of Trade). Checked against the codec's decoder on construction."""

    def __init__(self, symbol: str, rng: random.Random, pool: int = 1024) -> None:
        full = [encode(SchemaName.TRADE, trade(symbol, 0, 0, rng)) for _ in range(pool)]
        other = encode(SchemaName.TRADE, {**decode(full[0]).record, "trade_id": 1})
        at = next(i for i, (a, b) in enumerate(zip(full[0], other, strict=True)) if a != b)
        self._head = full[0][:at]
        self._middles = [record[at + 1 : -3] for record in full]
        for trade_id, ms in ((0, 0), (123_456_789, 1_764_446_400_123)):
            record = decode(self.encode(trade_id, zigzag_varint(ms) * 3)).record
            assert record["trade_id"] == trade_id, record
            assert record["event_time"] == dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)

    def encode(self, trade_id: int, times: bytes) -> bytes:
        middle = self._middles[trade_id % len(self._middles)]
        return b"".join((self._head, zigzag_varint(trade_id), middle, times))


def produce_paced(
    bootstrap: str, symbol: str, rate: int, seconds: float, first_id: int, out: Any
) -> None:
    """Produce `rate` trades a second for `seconds`, event time = now (child process)."""
    encoder = TradeEncoder(symbol, random.Random(rate))
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    topic, key = topics.trades(symbol), encode_key(symbol)
    began = time.time()
    sent = 0
    while (elapsed := time.time() - began) < seconds:
        due = int(elapsed * rate) + 1
        times = zigzag_varint(int(time.time() * 1000)) * 3
        while sent < due:
            producer.send(topic, key=key, value=encoder.encode(first_id + sent, times))
            sent += 1
        time.sleep(0.002)
    producer.flush(timeout=60)
    producer.close()
    out.put({"sent": sent, "seconds": time.time() - began})


def preload(bootstrap: str, symbol: str, count: int) -> None:
    encoder = TradeEncoder(symbol, random.Random(1))
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    topic, key = topics.trades(symbol), encode_key(symbol)
    start_ms = 1_764_446_400_000
    for index in range(count):  # 10,000 trades per second of event time
        times = zigzag_varint(start_ms + index // 10) * 3
        producer.send(topic, key=key, value=encoder.encode(index, times))
    producer.flush(timeout=300)
    producer.close()


def options_for(symbol: str, env: dict[str, str], tag: str, **extra: Any) -> Any:
    spec = parse_spec(
        {
            "symbol": symbol,
            "intervals": INTERVALS,
            "watermark": WATERMARK,
            "model": {"interval": "1m"},
            "sinks": {"hdfs": {"path": f"/bench/{tag}"}, "hive": {"enabled": False}},
        }
    )
    return aggregate_main.AggregateOptions(
        specs=[spec],
        bootstrap_servers=env["CRYPTOPIPE_KAFKA_BOOTSTRAP"],
        hdfs_url=env["CRYPTOPIPE_HDFS_URL"],
        **extra,
    )


def batch_rate(progress: list[Any]) -> tuple[int, float]:
    rows = sum(p.numInputRows for p in progress)
    seconds = sum(p.durationMs.get("triggerExecution", 0) for p in progress) / 1000
    return rows, rows / seconds if seconds else 0.0


def run_ours(spark: SparkSession, options: Any) -> list[Any]:
    fs = HadoopFs(spark, options.base)
    aggregate_main.ensure_candle_topics(options)
    targets = aggregate_main.sink_targets(options, fs, SchemaIds.derived())
    query = aggregate_main.start_query(spark, options, BatchWriter(spark, fs, targets))
    query.awaitTermination()
    return list(query.recentProgress)


def run_counted(
    spark: SparkSession,
    options: Any,
    name: str,
    prepare: Callable[[DataFrame], DataFrame],
) -> list[Any]:
    """Drain the topic with each batch's `prepare(records)` only counted, reading it as ours
    does (same source settings and batch size)."""

    def count(frame: DataFrame, _batch_id: int) -> None:
        frame.count()

    query = (
        prepare(aggregate_main.trade_records(spark, options))
        .writeStream.option(
            "checkpointLocation", checkpoint_location(options.base, f"bench/{name}")
        )
        .foreachBatch(count)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return list(query.recentProgress)


def decoded_valid_trades(raw: DataFrame) -> DataFrame:
    return pipeline.valid_trades(pipeline.observed_input(trade_source.trades(raw)))


def lightest_aggregation(raw: DataFrame) -> DataFrame:
    """Trades per symbol and 1-second window (count, summed quantity), final at the watermark."""
    return (
        decoded_valid_trades(raw)
        .withWatermark("event_time", pipeline.spark_delay(WATERMARK))
        .groupBy("symbol", F.window("event_time", "1 second"))
        .agg(F.count(F.lit(1)).alias("trades"), F.sum("quantity").alias("quantity"))
    )


def throughput(
    spark: SparkSession, env: dict[str, str], records: int, batch: int
) -> dict[str, Any]:
    symbol = f"BENCH{uuid.uuid4().hex[:8].upper()}"
    tag = f"tp_{symbol.lower()}"
    options = options_for(symbol, env, tag, available_now=True, max_offsets_per_trigger=batch)
    with cleaned_up(spark, env, options):
        create(env, [topics.trades(symbol)])
        preload(env["CRYPTOPIPE_KAFKA_BOOTSTRAP"], symbol, records)
        ours = run_ours(spark, options)
        ours_rows, ours_rate = batch_rate(ours)
        ref_rows, ref_rate = batch_rate(run_counted(spark, options, "count", lambda r: r))
        decode_rows, decode_rate = batch_rate(
            run_counted(spark, options, "decode", decoded_valid_trades)
        )
        light_rows, light_rate = batch_rate(
            run_counted(spark, options, "lightest", lightest_aggregation)
        )
    rows = (ours_rows, ref_rows, decode_rows, light_rows)
    assert all(count == records for count in rows), ("rows read", rows, "expected", records)
    return {
        "records": records,
        "batch_records": batch,
        "ours_per_second": round(ours_rate),
        "count_only_per_second": round(ref_rate),
        "ratio": round(ours_rate / ref_rate, 3),
        "decode_only_per_second": round(decode_rate),
        "decode_only_ratio": round(decode_rate / ref_rate, 3),
        "lightest_aggregation_per_second": round(light_rate),
        "lightest_aggregation_ratio": round(light_rate / ref_rate, 3),
        "ours_to_decode_only_ratio": round(ours_rate / decode_rate, 3),
        "ours_to_lightest_aggregation_ratio": round(ours_rate / light_rate, 3),
        "ours_batches_ms": [breakdown(p) for p in ours if p.numInputRows],
    }


ROUND_FIGURES = (
    "ours_per_second",
    "count_only_per_second",
    "ratio",
    "decode_only_ratio",
    "lightest_aggregation_ratio",
)


def measured_rounds(
    spark: SparkSession, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Warm-up rounds, then measured rounds; the round with the median ratio, and all rounds."""
    for index in range(args.warmup_rounds):
        warm = throughput(spark, env, args.records, args.batch_records)
        print(
            f"warm-up {index + 1}/{args.warmup_rounds}: ours {warm['ours_per_second']:,}/s, "
            f"ratio {warm['ratio']:.3f}",
            flush=True,
        )
    rounds = [throughput(spark, env, args.records, args.batch_records) for _ in range(args.rounds)]
    median = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
    return {
        **median,
        "warmup_rounds": args.warmup_rounds,
        "rounds": [{name: r[name] for name in ROUND_FIGURES} for r in rounds],
    }


def breakdown(progress: Any) -> dict[str, Any]:
    """Where a batch's time went: the trigger's phases and each stateful operator's time."""
    return {
        "rows": progress.numInputRows,
        **{k: v for k, v in progress.durationMs.items() if v},
        "state": {
            f"{i}:{op.operatorName}": {
                "rows": op.numRowsTotal,
                "updates_ms": op.allUpdatesTimeMs,
                "removals_ms": op.allRemovalsTimeMs,
                "commit_ms": op.commitTimeMs,
            }
            for i, op in enumerate(progress.stateOperators)
        },
    }


@contextmanager
def cleaned_up(spark: SparkSession, env: dict[str, str], options: Any) -> Iterator[None]:
    """Remove what a run creates (trades and candle topics, its HDFS folder), however it ends."""
    try:
        yield
    finally:
        HadoopFs(spark, options.base).delete(options.base)
        names = [topics.trades(options.spec.symbol), *aggregate_main.candle_topics(options)]
        admin = KafkaAdminClient(bootstrap_servers=env["CRYPTOPIPE_KAFKA_BOOTSTRAP"])
        try:
            admin.delete_topics(sorted(set(names) & set(admin.list_topics())), timeout_ms=30_000)
        finally:
            admin.close()


def create(env: dict[str, str], names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=env["CRYPTOPIPE_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(name, 2, 1) for name in names])
    admin.close()


def latency(spark: SparkSession, env: dict[str, str], rate: int, seconds: float) -> dict[str, Any]:
    symbol = f"BENCH{uuid.uuid4().hex[:8].upper()}"
    options = options_for(symbol, env, f"lat_{symbol.lower()}", trigger_interval="1 second")
    with cleaned_up(spark, env, options):
        return measure_latency(spark, env, options, rate, seconds)


def measure_latency(
    spark: SparkSession, env: dict[str, str], options: Any, rate: int, seconds: float
) -> dict[str, Any]:
    symbol, bootstrap = options.spec.symbol, env["CRYPTOPIPE_KAFKA_BOOTSTRAP"]
    create(env, [topics.trades(symbol)])
    fs = HadoopFs(spark, options.base)
    aggregate_main.ensure_candle_topics(options)
    targets = aggregate_main.sink_targets(options, fs, SchemaIds.derived())
    query = aggregate_main.start_query(spark, options, BatchWriter(spark, fs, targets))
    time.sleep(3)  # the first (empty) batch
    results: Any = multiprocessing.Queue()
    # One Python producer reaches about 20,000 trades/s on an idle core.
    count = -(-rate // 20_000)
    producers = [
        multiprocessing.Process(
            target=produce_paced,
            args=(bootstrap, symbol, rate // count, seconds, index * 10**9, results),
        )
        for index in range(count)
    ]
    began = time.time()
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    sent = [results.get() for _ in producers]
    time.sleep(5)  # let the last closed windows through
    progress = list(query.recentProgress)
    query.stop()
    consumed = consume(bootstrap, topics.candles("1s", symbol))
    delay = parse_duration(WATERMARK)
    samples = [
        ms - (int(record["window_end"].timestamp() * 1000) + delay)
        for record, ms in consumed
        if record["window_start"].timestamp() > began + 2  # after the warm-up second
    ]
    rows = [p for p in progress if p.numInputRows]
    processed = sum(p.numInputRows for p in rows)
    return {
        "target_per_second": rate,
        "producers": count,
        "achieved_input_per_second": round(
            sum(s["sent"] for s in sent) / max(s["seconds"] for s in sent)
        ),
        "processed_rows": processed,
        "candles": len(samples),
        "p50_ms": round(statistics.median(samples)) if samples else None,
        "p99_ms": round(percentile(samples, 0.99)) if samples else None,
        "max_ms": max(samples) if samples else None,
        "batch_ms_p50": round(statistics.median(p.batchDuration for p in rows)) if rows else None,
        "batch_ms_max": max(p.batchDuration for p in rows) if rows else None,
    }


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def consume(bootstrap: str, topic: str) -> list[tuple[dict[str, Any], int]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    out = [(decode(m.value).record, m.timestamp) for m in consumer]
    consumer.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="2000,10000,50000")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch-records", type=int, default=100_000)
    parser.add_argument("--warmup-rounds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = testbed_env()
    os.environ["SPARK_LOCAL_IP"] = env["SPARK_LOCAL_IP"]
    spark = create_session(
        SparkSettings(
            app_name="bench-aggregate",
            jars=env["CRYPTOPIPE_SPARK_JARS"].split(","),
            default_fs=env["CRYPTOPIPE_HDFS_URL"],
            driver_memory="2g",
        )
    )
    spark.sparkContext.setLogLevel("ERROR")
    load_before = os.getloadavg()
    tp = measured_rounds(spark, env, args)
    print(
        f"throughput (median of {args.rounds} rounds): ours {tp['ours_per_second']:,} trades/s, "
        f"count-only {tp['count_only_per_second']:,} records/s, ratio {tp['ratio']:.3f} "
        f"(target >= 0.6); every round's ratio: {[r['ratio'] for r in tp['rounds']]}"
    )
    print(
        f"decode-only reference: {tp['decode_only_per_second']:,} trades/s, ratio to count-only "
        f"{tp['decode_only_ratio']:.3f}; ours / decode-only {tp['ours_to_decode_only_ratio']:.3f}"
    )
    print(
        f"lightest aggregation: {tp['lightest_aggregation_per_second']:,} trades/s, ratio to "
        f"count-only {tp['lightest_aggregation_ratio']:.3f}; ours / lightest "
        f"{tp['ours_to_lightest_aggregation_ratio']:.3f}"
    )
    runs = []
    for rate in (int(r) for r in args.rates.split(",")):
        result = latency(spark, env, rate, args.seconds)
        runs.append(result)
        print(
            f"rate {rate:>6,}/s (achieved {result['achieved_input_per_second']:,}/s): "
            f"close+watermark -> Kafka p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
            f"over {result['candles']} candles"
        )
    spark.stop()
    result_doc = {
        "benchmark": "aggregate",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), Python "
        f"{platform.python_version()}, Spark local[2]",
        "intervals": INTERVALS,
        "watermark": WATERMARK,
        "trigger": "1 second (latency runs)",
        "sinks": "HDFS parquet + Kafka candle topics (Hive and Sheets off)",
        "throughput": tp,
        "latency": runs,
        "targets": {"p99_ms_at_10000_per_second": 5000, "throughput_ratio": 0.6},
        "data": "synthetic trades (load test)",
        "load_average_1_5_15_min": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result_doc, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
