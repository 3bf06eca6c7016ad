"""Pools: what N symbol pipelines request at steady state, pooled against dedicated.

Requests are summed from the operator's own builders (children.desired and children.pool):
the manifests it would apply for N pipelines of one namespace, with the operator chart's default
platform settings. Steady state means the long-running pods: producer, Spark driver and
executor, predictor and dashboard; training Jobs come and go (one per pipeline at a time, every
`model.schedule`) and are listed apart. Spark pods count their JVM overhead as Kubernetes sees
it (the spark-operator adds max(384 MiB, 10%) to the memory the SparkApplication names).

The reference in the same run is dedicated isolation at the same N. With --node, the node's
allocatable (the test bed's real node, from `scripts/testbed env`) says how many fit.

Not measured here (issue 24, part 4, left open): CPU and memory used by running pods, the
latency at 10,000 trades/s over 100 symbols, `kubectl apply` to the first forecast, and API
writes at rest with 100 live pipelines.

    uv run python bench/pools.py [--symbols 1,10,50,100] [--dashboards] [--node NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptopipe_operator import children, pools
from cryptopipe_operator.children import pool as pool_children
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.quantities import parse_quantity
from cryptopipe_schemas.spec import parse_spec

RESULTS = Path(__file__).with_name("results") / "pools.json"
SPARK_OVERHEAD_MIN = Decimal(384 * 2**20)
SPARK_OVERHEAD_FACTOR = Decimal("0.10")
GIB = Decimal(2**30)


@dataclass
class Requests:
    cpu: Decimal = Decimal(0)  # cores
    memory: Decimal = Decimal(0)  # bytes
    pods: int = 0

    def add(self, cpu: str | int | None, memory: str | int | None, pods: int = 1) -> None:
        self.cpu += parse_quantity(str(cpu)) if cpu is not None else Decimal(0)
        self.memory += parse_quantity(str(memory)) if memory is not None else Decimal(0)
        self.pods += pods

    def row(self) -> dict[str, Any]:
        return {
            "cpu_cores": float(round(self.cpu, 3)),
            "memory_gib": float(round(self.memory / GIB, 3)),
            "pods": self.pods,
        }


def bodies(count: int, isolation: str, dashboards: bool) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {
                "name": f"sym{index:03d}",
                "namespace": "bench",
                "uid": f"uid-{index}",
                "creationTimestamp": f"2026-01-01T00:00:{index % 60:02d}Z",
            },
            "spec": {
                "symbol": f"SYN{index:03d}USDT",
                "isolation": isolation,
                "source": {"kind": "synthetic"},
                "dashboard": {"enabled": dashboards},
            },
        }
        for index in range(count)
    ]


def steady(manifests: Iterable[dict[str, Any]], into: Requests, jobs: Requests) -> None:
    for manifest in manifests:
        kind = manifest["kind"]
        if kind == "Deployment":
            replicas = manifest["spec"].get("replicas", 1)
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                requests = container["resources"]["requests"]
                for _ in range(replicas):
                    into.add(requests["cpu"], requests["memory"])
        elif kind == "SparkApplication":
            spec = manifest["spec"]
            for role, count in (("driver", 1), ("executor", spec["executor"].get("instances", 1))):
                pod = spec[role]
                memory = parse_quantity(pod["memory"].replace("m", "Mi"))
                overhead = max(SPARK_OVERHEAD_MIN, memory * SPARK_OVERHEAD_FACTOR)
                for _ in range(count):
                    into.add(pod["coreRequest"], int(memory + overhead))
        elif kind == "Job":
            container = manifest["spec"]["template"]["spec"]["containers"][0]
            requests = container["resources"]["requests"]
            jobs.add(requests["cpu"], requests["memory"])


def measure(count: int, isolation: str, dashboards: bool, config: PlatformConfig) -> dict[str, Any]:
    steady_state, training = Requests(), Requests()
    found = bodies(count, isolation, dashboards)
    for body in found:
        pipeline = children.Pipeline(body["metadata"]["name"], "bench", parse_spec(body["spec"]))
        steady(children.desired(pipeline, config), steady_state, training)
    if isolation == "shared" and found:
        view = pools.pool_view("bench", "default", found, {})
        assert view is not None and not view.problems
        steady(pool_children.desired(view.pool, config), steady_state, training)
    return {"steady": steady_state.row(), "training_jobs": training.row()}


def node_allocatable(node: str) -> dict[str, float] | None:
    kubectl = os.environ.get("CRYPTOPIPE_KUBECTL", "kubectl")
    result = subprocess.run(
        [kubectl, "get", "node", node, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        return None
    allocatable = json.loads(result.stdout)["status"]["allocatable"]
    return {
        "cpu_cores": float(parse_quantity(allocatable["cpu"])),
        "memory_gib": float(round(parse_quantity(allocatable["memory"]) / GIB, 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="1,2,10,50,100")
    parser.add_argument("--dashboards", action="store_true", help="a dashboard per pipeline")
    parser.add_argument("--node", help="read this node's allocatable (the test bed's real node)")
    args = parser.parse_args()
    config = PlatformConfig()
    counts = [int(n) for n in args.symbols.split(",")]
    rows = []
    for count in counts:
        shared = measure(count, "shared", args.dashboards, config)
        dedicated = measure(count, "dedicated", args.dashboards, config)
        ratio = shared["steady"]["memory_gib"] / dedicated["steady"]["memory_gib"]
        rows.append({"symbols": count, "shared": shared, "dedicated": dedicated,
                     "memory_ratio_shared_to_dedicated": round(ratio, 4)})  # fmt: skip
        print(
            f"{count:4d} symbols: shared {shared['steady']['cpu_cores']:7.2f} cores "
            f"{shared['steady']['memory_gib']:8.2f} GiB | dedicated "
            f"{dedicated['steady']['cpu_cores']:7.2f} cores "
            f"{dedicated['steady']['memory_gib']:8.2f} GiB | memory ratio {ratio:.4f}"
        )
    node = node_allocatable(args.node) if args.node else None
    if node is not None:
        print(f"node {args.node} allocatable: {node['cpu_cores']} cores, {node['memory_gib']} GiB")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "machine": platform.platform(),
                "what": "requests summed from the operator's builders, default platform config",
                "dashboards": args.dashboards,
                "node_allocatable": node,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
