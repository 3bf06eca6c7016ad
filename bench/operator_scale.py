"""Operator scale: apply N CryptoPipelines at once, time until every child exists and every
status is reconciled, then count API requests per reconcile and writes at steady state.

Set up as the end-to-end test does (tests/integration/test_operator_e2e.py): helm installs the
chart (unique release, unique namespace), the upstream Strimzi and spark-operator CRDs are
applied, a Strimzi `Kafka` is created and marked Ready, and the operator runs here as a
subprocess with the chart ServiceAccount's token, watching only the bench namespace. Pods are
scheduled onto the kwok fake node; nobody plays spark-operator, so SparkApplications stay
without a state (the pipelines settle in whatever phase that implies).

"Reconciled" for a pipeline: every child the operator's own builders want exists (owned by it)
and status.observedGeneration equals metadata.generation with DependenciesReady=True.

References, same run, same API server: the Kubeflow spark-operator's published ~150
applications per minute, and `kubectl apply` of N plain ConfigMaps (one List, like the
pipelines).

    uv run python bench/operator_scale.py [--pipelines N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cryptopipe_operator import children
from cryptopipe_operator.children.common import MANAGED_BY, PIPELINE_LABEL, Pipeline
from cryptopipe_operator.config import PlatformConfig, load_config
from cryptopipe_operator.kube import Kube, load_api_client
from cryptopipe_schemas.spec import parse_spec
from cryptopipe_testbed import upstream_crds
from cryptopipe_testbed.components.kube import (
    FAKE_NODE_LABEL,
    FAKE_NODE_TAINT,
    Kubernetes,
    service_account_kubeconfig,
    wait_established,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "operator.json"
CHART = ROOT / "charts" / "cryptopipe-operator"
SPARK_OPERATOR_PER_MINUTE = 150.0  # Kubeflow spark-operator's published figure
TOLERATION = {
    "key": FAKE_NODE_TAINT[0],
    "operator": "Equal",
    "value": FAKE_NODE_TAINT[1],
    "effect": FAKE_NODE_TAINT[2],
}
SELECTOR = {FAKE_NODE_LABEL[0]: FAKE_NODE_LABEL[1]}
CRDS = (
    "kafkas.kafka.strimzi.io",
    "kafkatopics.kafka.strimzi.io",
    "sparkapplications.sparkoperator.k8s.io",
    "cryptopipelines.cryptopipe.io",
)
REQUESTS_METRIC = "cryptopipe_operator_api_requests_total"
WRITES_METRIC = "cryptopipe_operator_writes_total"
SAMPLE = re.compile(r"^(?P<key>[a-z_]+(?:\{[^}]*\})?) (?P<value>\S+)$", re.MULTILINE)


@dataclass
class Bed:
    env: dict[str, str]

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.env["CRYPTOPIPE_KUBECTL"], f"--kubeconfig={self.env['KUBECONFIG']}", *args]
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=180, check=False
        )

    def must(self, *args: str, stdin: str | None = None) -> str:
        result = self.kubectl(*args, stdin=stdin)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()}")
        return result.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """`python -m cryptopipe_operator` as the chart's ServiceAccount, one namespace."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*argv, f"--metrics-port={self.port}"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        return {m["key"]: float(m["value"]) for m in SAMPLE.finditer(text)}

    def proc(self, field: str) -> int:
        """A /proc/<pid>/status field in KiB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def verb_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The operator client's requests by verb between two scrapes."""
    now, then = by_label(after, REQUESTS_METRIC), by_label(before, REQUESTS_METRIC)
    return {verb: count - then.get(verb, 0.0) for verb, count in sorted(now.items())}


def writes(verbs: dict[str, float]) -> float:
    """Writes to children, status and events: PATCH, POST, DELETE (PUT is only the Lease)."""
    return sum(verbs.get(verb, 0.0) for verb in ("PATCH", "POST", "DELETE"))


def per_reconcile(verbs: dict[str, float], count: float) -> float | None:
    """Requests per reconcile, less the Lease's GET + PUT per renewal."""
    lease = 2 * verbs.get("PUT", 0.0)
    return round((sum(verbs.values()) - lease) / count, 2) if count else None


def reconciles(metrics: dict[str, float]) -> float:
    return total(metrics, "cryptopipe_operator_reconciles_total")


def total(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def by_label(metrics: dict[str, float], name: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if key.startswith(name + "{"):
            out[key[len(name) + 1 : -1].split("=", 1)[1].strip('"')] = value
    return out


def pipelines_list(n: int) -> dict[str, Any]:
    items = [
        {
            "apiVersion": "cryptopipe.io/v1alpha1",
            "kind": "CryptoPipeline",
            "metadata": {"name": f"b{i:03d}usdt"},
            "spec": {"symbol": f"B{i:03d}USDT"},
        }
        for i in range(n)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def configmaps_list(n: int) -> dict[str, Any]:
    items = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"ref-{i:03d}", "labels": {"bench": "reference"}},
            "data": {"symbol": f"B{i:03d}USDT"},
        }
        for i in range(n)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


class Progress:
    """Polls the namespace as admin: which pipelines have every child and a reconciled status."""

    def __init__(self, admin: Kube, namespace: str, config: PlatformConfig) -> None:
        self.admin, self.ns, self.config = admin, namespace, config
        self.expected: dict[str, set[tuple[str, str]]] = {}
        self.children_at: dict[str, float] = {}
        self.reconciled_at: dict[str, float] = {}
        self.phases: dict[str, str] = {}

    def poll(self, started: float) -> None:
        cpls = self.admin.list(
            f"/apis/cryptopipe.io/v1alpha1/namespaces/{self.ns}/cryptopipelines", ""
        )
        present: dict[str, set[tuple[str, str]]] = {}
        for kind in children.CHILD_KINDS:
            selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
            for obj in self.admin.list(kind.path(self.ns), selector):
                meta = obj["metadata"]
                if any(r.get("kind") == "CryptoPipeline" for r in meta.get("ownerReferences", [])):
                    owner = meta.get("labels", {}).get(PIPELINE_LABEL, "")
                    present.setdefault(owner, set()).add((kind.kind, meta["name"]))
        now = time.monotonic() - started  # when the lists answered (conservative)
        for cpl in cpls:
            meta, st = cpl["metadata"], cpl.get("status") or {}
            name = meta["name"]
            if name not in self.expected:
                spec = parse_spec(cpl.get("spec") or {})
                wanted = children.desired(Pipeline(name, self.ns, spec), self.config)
                self.expected[name] = {(d["kind"], d["metadata"]["name"]) for d in wanted}
            self.phases[name] = st.get("phase", "")
            has_children = self.expected[name] <= present.get(name, set())
            if has_children:
                self.children_at.setdefault(name, now)
            deps = [c for c in st.get("conditions", []) if c.get("type") == "DependenciesReady"]
            if (
                has_children
                and st.get("observedGeneration") == meta.get("generation")
                and deps
                and deps[0].get("status") == "True"
            ):
                self.reconciled_at.setdefault(name, now)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def other_operator_leases(admin: Kube, mine: str) -> list[str]:
    """Leases of other live operators on this API server (another session's run, say)."""
    out = []
    now = datetime.now(UTC)
    for lease in admin.list("/apis/coordination.k8s.io/v1/leases", ""):
        meta, spec = lease["metadata"], lease.get("spec", {})
        if meta["namespace"] in ("kube-system", "kube-node-lease") or meta["name"] == mine:
            continue
        renewed = spec.get("renewTime")
        if not renewed or not spec.get("holderIdentity"):
            continue
        when = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
        if (now - when).total_seconds() < 60:
            out.append(f"{meta['namespace']}/{meta['name']}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--resync-seconds", type=float, default=30.0, help="the chart default")
    parser.add_argument("--timeout", type=float, default=180.0, help="for all reconciled")
    args = parser.parse_args()
    n = args.pipelines

    kube_component = Kubernetes()
    kube_component.install()
    if not kube_component.health().healthy:
        kube_component.start()
    bed = Bed(kube_component.env())
    for path in upstream_crds.crd_files():
        bed.must("apply", "--server-side", "--force-conflicts", "-f", str(path))
    crd = CHART / "crds" / "cryptopipelines.yaml"
    bed.must("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    wait_established([f"crd/{name}" for name in CRDS])

    tag = uuid.uuid4().hex[:6]
    ns, release, fullname = f"cpo-bench-{tag}", f"cpob-{tag}", f"cpo-bench-{tag}"
    home = Path(f"/tmp/cryptopipe-operator-bench/{ns}")
    home.mkdir(parents=True)
    values = {
        "fullnameOverride": fullname,
        "watchNamespaces": [ns],
        "tolerations": [TOLERATION],
        "nodeSelector": SELECTOR,
        "operator": {"resyncSeconds": args.resync_seconds},
        "platform": {
            "scheduling": {"tolerations": [TOLERATION], "nodeSelector": SELECTOR},
            "freshness": {"enabled": False},  # no producer runs on kwok
        },
    }
    (home / "values.yaml").write_text(yaml.safe_dump(values))
    helm_env = {
        **os.environ,
        "KUBECONFIG": bed.env["KUBECONFIG"],
        "HELM_CACHE_HOME": str(home / "c"),
        "HELM_CONFIG_HOME": str(home / "f"),
        "HELM_DATA_HOME": str(home / "d"),
    }
    helm = bed.env["CRYPTOPIPE_HELM"]
    operator: Operator | None = None
    try:
        result = subprocess.run(
            [
                *(helm, "install", release, str(CHART), "-n", ns, "--create-namespace"),
                *("-f", str(home / "values.yaml"), "--wait", "--timeout=120s"),
            ],
            capture_output=True,
            text=True,
            env=helm_env,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm install: {result.stderr.strip()}")
        cm = json.loads(bed.must("get", "configmap", fullname, "-n", ns, "-o", "json"))
        config_file = home / "platform.yaml"
        config_file.write_text(cm["data"]["platform.yaml"])
        config = load_config(config_file, ns)
        kafka = {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "Kafka",
            "metadata": {"name": config.kafka.cluster},
            "spec": {
                "kafka": {
                    "listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}]
                }
            },
        }
        bed.must("apply", "-n", ns, "-f", "-", stdin=json.dumps(kafka))
        ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        bed.must(
            "patch", "kafka", config.kafka.cluster, "-n", ns, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"conditions": [ready]}}),
        )  # fmt: skip
        kubeconfig = service_account_kubeconfig(ns, fullname, home / "sa-kubeconfig.yaml")
        operator = Operator(
            [
                sys.executable, "-m", "cryptopipe_operator", f"--kubeconfig={kubeconfig}",
                f"--config={config_file}", f"--operator-namespace={ns}", f"--namespace={ns}",
                f"--lease-name={fullname}", f"--identity=bench-{tag}",
                f"--resync-seconds={args.resync_seconds}", "--log-level=WARNING",
            ],
            home / "operator.log",
        )  # fmt: skip
        op = operator
        wait_for(
            "the operator to lead",
            lambda: op.metrics().get("cryptopipe_operator_leader") == 1.0,
            60,
        )
        time.sleep(2)  # kopf's watch starts just after the Lease
        admin = Kube(load_api_client(bed.env["KUBECONFIG"]))
        others = other_operator_leases(admin, fullname)
        rss_idle = op.proc("VmRSS")

        # Reference: kubectl apply of N ConfigMaps through the same API server.
        began = time.monotonic()
        bed.must("apply", "-n", ns, "-f", "-", stdin=json.dumps(configmaps_list(n)))
        reference_seconds = time.monotonic() - began

        # The burst: N pipelines in one apply; poll until every one is reconciled.
        progress = Progress(admin, ns, config)
        before, cpu_before = op.metrics(), op.cpu_seconds()
        peak_rss = [0]
        done = threading.Event()

        def sample_rss() -> None:
            while not done.wait(0.5):
                peak_rss[0] = max(peak_rss[0], op.proc("VmRSS"))

        threading.Thread(target=sample_rss, daemon=True).start()
        started = time.monotonic()
        bed.must("apply", "-n", ns, "-f", "-", stdin=json.dumps(pipelines_list(n)))
        apply_seconds = time.monotonic() - started
        deadline = started + args.timeout
        while len(progress.reconciled_at) < n and time.monotonic() < deadline:
            progress.poll(started)
            time.sleep(0.5)
        done_at = max(progress.reconciled_at.values(), default=0.0)
        all_seconds = done_at if len(progress.reconciled_at) == n else None
        after = op.metrics()
        cpu_burst = op.cpu_seconds() - cpu_before
        done.set()
        burst = verb_deltas(before, after)
        burst_reconciles = reconciles(after) - reconciles(before)
        burst_writes = writes(burst)

        # Settle (kwok starts pods, trainer Jobs finish, the next resync reports them), then a
        # window at steady state.
        quiet_for = args.resync_seconds + 5
        settle_began = time.monotonic()
        last_writes, last_change = -1.0, time.monotonic()
        while time.monotonic() - last_change < quiet_for and time.monotonic() - settle_began < 120:
            time.sleep(2)
            writes_now = writes(verb_deltas({}, op.metrics()))
            if writes_now != last_writes:
                last_writes, last_change = writes_now, time.monotonic()
        settle_seconds = time.monotonic() - settle_began
        s0, cpu0 = op.metrics(), op.cpu_seconds()
        time.sleep(args.steady_seconds)
        s1, cpu1 = op.metrics(), op.cpu_seconds()
        steady = verb_deltas(s0, s1)
        steady_reconciles = reconciles(s1) - reconciles(s0)
        steady_writes = writes(steady)
        metric_writes = total(s1, WRITES_METRIC) - total(s0, WRITES_METRIC)
        progress.poll(started)
        phases: dict[str, int] = {}
        for phase in progress.phases.values():
            phases[phase] = phases.get(phase, 0) + 1
        latencies = list(progress.reconciled_at.values())
        rate = n / all_seconds * 60 if all_seconds else None
        children_total = sum(len(v) for v in progress.expected.values())
        out: dict[str, Any] = {
            "benchmark": "operator",
            "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "setup": "test bed API server + kwok; operator as a subprocess with the chart "
            "ServiceAccount's token, one namespace; spark-operator not played",
            "pipelines": n,
            "children_per_pipeline": children_total / max(1, len(progress.expected)),
            "kubectl_apply_pipelines_seconds": round(apply_seconds, 2),
            "all_reconciled_seconds": round(all_seconds, 2) if all_seconds else None,
            "reconciled": len(progress.reconciled_at),
            "all_children_seconds": round(max(progress.children_at.values()), 2)
            if len(progress.children_at) == n
            else None,
            "reconciled_p50_seconds": round(percentile(latencies, 0.5), 2),
            "reconciled_p90_seconds": round(percentile(latencies, 0.9), 2),
            "target_seconds": 60,
            "pipelines_per_minute": round(rate, 1) if rate else None,
            "reference_spark_operator_per_minute": SPARK_OPERATOR_PER_MINUTE,
            "ratio_to_spark_operator": round(rate / SPARK_OPERATOR_PER_MINUTE, 2) if rate else None,
            "reference_kubectl_apply_configmaps_seconds": round(reference_seconds, 2),
            "ratio_all_reconciled_to_configmaps_apply": round(all_seconds / reference_seconds, 2)
            if all_seconds
            else None,
            "burst_api_requests_by_verb": burst,
            "burst_reconciles": burst_reconciles,
            "burst_writes": burst_writes,
            "burst_writes_per_second": round(burst_writes / all_seconds, 1)
            if all_seconds
            else None,
            "reference_configmap_writes_per_second": round(n / reference_seconds, 1),
            "burst_api_requests_per_reconcile": per_reconcile(burst, burst_reconciles),
            "burst_operator_cpu_seconds": round(cpu_burst, 1),
            "settle_seconds": round(settle_seconds, 1),
            "resync_seconds": args.resync_seconds,
            "steady_window_seconds": args.steady_seconds,
            "steady_reconciles": steady_reconciles,
            "steady_api_requests_by_verb": steady,
            "steady_api_requests_per_reconcile": per_reconcile(steady, steady_reconciles),
            "steady_writes": steady_writes,
            "steady_writes_per_minute": round(steady_writes * 60 / args.steady_seconds, 2),
            "steady_lease_renewals": steady.get("PUT", 0.0),
            "steady_writes_total_metric": metric_writes,
            "steady_operator_cpu_percent": round(100 * (cpu1 - cpu0) / args.steady_seconds, 1),
            "target_steady_writes": 0,
            "rss_idle_mib": round(rss_idle / 1024, 1),
            "rss_peak_sampled_mib": round(peak_rss[0] / 1024, 1),
            "rss_hwm_mib": round(op.proc("VmHWM") / 1024, 1),
            "rss_steady_mib": round(op.proc("VmRSS") / 1024, 1),
            "chart_memory_limit": "256Mi",
            "phases_at_end": phases,
            "other_operator_leases": others,
            "api_requests_note": "the operator's own client only (kopf's watch is not counted); "
            "writes = PATCH+POST+DELETE attempts; per reconcile excludes the Lease's GET+PUT",
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
        print_table(out)
        return 0 if all_seconds else 1
    finally:
        if operator is not None:
            operator.stop()
        subprocess.run(
            [helm, "uninstall", release, "-n", ns, "--wait=false"],
            env=helm_env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        bed.kubectl("delete", "namespace", ns, "--wait=false")


def print_table(r: dict[str, Any]) -> None:
    def fmt(value: Any, unit: str = "") -> str:
        return "n/a" if value is None else f"{value}{unit}"

    rows = [
        ("pipelines applied", fmt(r["pipelines"])),
        ("kubectl apply (pipelines)", fmt(r["kubectl_apply_pipelines_seconds"], " s")),
        ("all children exist", fmt(r["all_children_seconds"], " s")),
        ("all reconciled (target < 60 s)", fmt(r["all_reconciled_seconds"], " s")),
        ("  p50 / p90 per pipeline", f"{r['reconciled_p50_seconds']} / "
         f"{r['reconciled_p90_seconds']} s"),
        ("pipelines per minute", fmt(r["pipelines_per_minute"])),
        ("  vs spark-operator 150/min", fmt(r["ratio_to_spark_operator"], "x")),
        ("kubectl apply N ConfigMaps (ref)", fmt(r["reference_kubectl_apply_configmaps_seconds"],
                                                  " s")),
        ("  all reconciled / ref", fmt(r["ratio_all_reconciled_to_configmaps_apply"], "x")),
        ("writes/s burst vs ref ConfigMaps/s", f"{fmt(r['burst_writes_per_second'])} vs "
         f"{r['reference_configmap_writes_per_second']}"),
        ("API requests per reconcile (burst)", fmt(r["burst_api_requests_per_reconcile"])),
        ("API requests per reconcile (steady)", fmt(r["steady_api_requests_per_reconcile"])),
        ("steady writes per minute (target 0)", fmt(r["steady_writes_per_minute"])),
        ("  + Lease renewals in the window", fmt(r["steady_lease_renewals"])),
        ("operator RSS idle / steady / peak", f"{r['rss_idle_mib']} / {r['rss_steady_mib']} / "
         f"{r['rss_hwm_mib']} MiB"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"-> {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
