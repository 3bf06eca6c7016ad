"""Producer throughput: our whole path against Kafka's own ProducerPerformance, same run.

Our path per trade: a Binance combined-stream JSON frame, parsing and validation, Avro encoding
with the Confluent header, and a transactional acks=all send keyed by symbol (a transaction
committed every 500 ms, as the producer does), committed at the end. The reference:
org.apache.kafka.tools.ProducerPerformance (kafka-producer-perf-test) from the same Kafka jars,
records of our average encoded size, acks=all, transactional with the same 500 ms duration.

The frames are synthetic (a load test): prices and ids are generated, not recorded.

    uv run python bench/producer.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import subprocess
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from cryptopipe_jobs.producer.frames import ParsedTrade, parse_frame
from cryptopipe_jobs.producer.kafka_sink import KafkaTradeSink, create_transactional
from cryptopipe_jobs.producer.transactions import DEFAULT_COMMIT_INTERVAL
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import encode
from cryptopipe_testbed.components.kafka import Kafka

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "producer.json"
SYMBOL = "BTCUSDT"


def synthetic_frames(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    price, start = 97_000.0, 1_764_446_400_000
    frames = []
    for i in range(count):
        price *= 1 + rng.gauss(0, 0.0002)
        data = {
            "e": "trade",
            "E": start + i,
            "s": SYMBOL,
            "t": 5_000_000_000 + i,
            "p": f"{price:.2f}",
            "q": f"{rng.uniform(0.0001, 0.5):.5f}",
            "T": start + i,
            "m": rng.random() < 0.5,
            "M": True,
        }
        frames.append(json.dumps({"stream": "btcusdt@trade", "data": data}).encode())
    return frames


def run_ours(bootstrap: str, topic_symbol: str, frames: list[bytes]) -> dict[str, float]:
    symbols = frozenset({SYMBOL})
    producer = create_transactional(bootstrap, "bench-producer", f"bench.{topic_symbol.lower()}")
    sink = KafkaTradeSink(producer, "bench")
    began = time.perf_counter()
    for raw in frames:
        outcome = parse_frame(raw, symbols, int(time.time() * 1000))
        assert isinstance(outcome, ParsedTrade)
        record = outcome.record
        record["symbol"] = topic_symbol
        sink.publish_trade(record)
    sink.flush(timeout=120)
    elapsed = time.perf_counter() - began
    sink.close()
    sample = parse_frame(frames[0], symbols, 0)
    assert isinstance(sample, ParsedTrade)
    sizes = len(encode(SchemaName.TRADE, sample.record))
    return {
        "records": len(frames),
        "seconds": elapsed,
        "per_second": len(frames) / elapsed,
        "record_bytes": sizes,
    }


def run_reference(
    kafka: Kafka, bootstrap: str, topic: str, records: int, record_size: int
) -> dict[str, float]:
    argv = [
        "java",
        "-Xmx512m",
        "-cp",
        f"{kafka.lib}/*",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=20",
        "--transactional-id",
        f"bench.{topic}",
        "--transaction-duration-ms",
        str(int(DEFAULT_COMMIT_INTERVAL * 1000)),
    ]
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    final = [line for line in output.splitlines() if "records sent" in line][-1]
    match = re.search(r"(\d+) records sent, ([\d.]+) records/sec", final)
    assert match, final
    return {"records": int(match[1]), "per_second": float(match[2]), "summary": final}  # type: ignore[dict-item]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()

    kafka = Kafka()
    kafka.install()
    if not kafka.health().healthy:
        kafka.start()
    bootstrap = kafka.address()
    run_id = uuid.uuid4().hex[:8].upper()
    ours_symbol, reference_topic = f"BENCH{run_id}", f"bench.reference.{run_id.lower()}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [NewTopic(f"trades.{ours_symbol.lower()}", 1, 1), NewTopic(reference_topic, 1, 1)]
    )

    frames = synthetic_frames(args.records)
    ours = run_ours(bootstrap, ours_symbol, frames)
    reference = run_reference(
        kafka, bootstrap, reference_topic, args.records, int(ours["record_bytes"])
    )
    admin.delete_topics([f"trades.{ours_symbol.lower()}", reference_topic])
    admin.close()

    ratio = ours["per_second"] / reference["per_second"]
    result = {
        "benchmark": "producer",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "records": args.records,
        "record_bytes": ours["record_bytes"],
        "ours_per_second": round(ours["per_second"]),
        "reference_per_second": round(reference["per_second"]),
        "ratio_ours_to_reference": round(ratio, 3),
        "target_per_second": 20_000,
        "transaction_ms": int(DEFAULT_COMMIT_INTERVAL * 1000),
        "data": "synthetic trades (load test)",
    }
    print(
        "cryptopipe producer (JSON -> validate -> Avro -> transactional send, acks=all): "
        f"{ours['per_second']:>10,.0f} records/s"
    )
    print(
        f"Kafka ProducerPerformance ({int(ours['record_bytes'])} B records, transactional): "
        f"{reference['per_second']:>10,.0f} records/s"
    )
    print(
        f"ratio ours / reference: {ratio:.3f}  (target: at least 20,000 records/s from one process)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
