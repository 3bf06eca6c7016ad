"""HDFS file close time: Hadoop's client defaults against our client settings, same run.

Every micro-batch of the aggregator closes several small files on HDFS (the offset and commit
logs, a state delta per stateful operator and partition, parquet, the Sheets outbox). A close
asks the NameNode to complete the file; when the DataNode's report of the block has not arrived
yet, the client sleeps before asking again: 400 ms by default, 10 ms with our settings
(`cryptopipe_jobs.spark_session.hdfs_client_config`). This measures create + write 1 KiB +
close on the test bed's HDFS, alternating the two clients so that load affects both alike.

    uv run python bench/hdfs_close.py [--files 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from cryptopipe_jobs.spark_session import (
    SparkSettings,
    create_session,
    hdfs_client_config,
)
from cryptopipe_testbed.components import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "hdfs_close.json"
PAYLOAD = bytearray(b"x" * 1024)


def summary(millis: list[float]) -> dict[str, float]:
    ordered = sorted(millis)
    return {
        "mean_ms": round(statistics.fmean(ordered), 1),
        "p50_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
        "closes_over_100_ms": sum(1 for m in ordered if m > 100),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=100, help="files per client")
    args = parser.parse_args()
    env: dict[str, str] = {}
    for name in ("hdfs", "spark"):
        component = BY_NAME[name]
        if not component.health().healthy:
            raise SystemExit(f"test bed component {name} is not running: scripts/testbed up")
        env.update(component.env())
    os.environ["SPARK_LOCAL_IP"] = env["SPARK_LOCAL_IP"]
    spark = create_session(SparkSettings(app_name="bench-hdfs-close"))
    spark.sparkContext.setLogLevel("ERROR")
    jvm: Any = spark._jvm  # the Hadoop client is only reachable through py4j
    hadoop = jvm.org.apache.hadoop
    uri = jvm.java.net.URI.create(env["CRYPTOPIPE_HDFS_URL"])

    def client(settings: dict[str, str]) -> Any:
        conf = hadoop.conf.Configuration()
        conf.set("dfs.client.use.datanode.hostname", "true")
        for key, value in settings.items():
            conf.set(key, value)
        return hadoop.fs.FileSystem.newInstance(uri, conf)

    clients = {"hadoop_defaults": client({}), "ours": client(hdfs_client_config())}
    folder = f"/bench/hdfs_close_{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for index in range(args.files + 1):
            for name, fs in clients.items():
                began = time.perf_counter()
                out = fs.create(hadoop.fs.Path(f"{folder}/{name}-{index}"), True)
                out.write(PAYLOAD)
                out.close()
                if index:  # the first file per client opens its connections
                    times[name].append((time.perf_counter() - began) * 1000)
    finally:
        clients["ours"].delete(hadoop.fs.Path(folder), True)
        for fs in clients.values():
            fs.close()
        spark.stop()
    results = {name: summary(millis) for name, millis in times.items()}
    ratio = results["hadoop_defaults"]["mean_ms"] / results["ours"]["mean_ms"]
    for name, figures in results.items():
        print(f"{name:>16}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print(f"mean close time, Hadoop defaults / ours: {ratio:.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "hdfs_close",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), test bed HDFS "
                "(1 NameNode, 1 DataNode, replication 1)",
                "files_per_client": args.files,
                "file_bytes": len(PAYLOAD),
                "settings_ours": hdfs_client_config(),
                "results": results,
                "defaults_over_ours_mean": round(ratio, 1),
                "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
