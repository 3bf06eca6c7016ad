"""The README's cluster quickstart, command by command, on a real kind cluster made offline:
from `scripts/cluster up --kind --offline` and `kubectl apply` of one CryptoPipeline to forecasts
on the dashboard, then `scripts/cluster down --kind --offline --delete-cluster`, which leaves the
host as it found it.

`scripts/cluster up` creates the kind cluster (node image assembled here, kind and kubeadm from
the Go module proxy), builds and loads our images with `kind load image-archive`, installs the
Kubeflow spark-operator from its own chart (its controller built from source on our Spark image:
no registry gives upstream's), and `helm install`s the platform chart with values-kind.yaml
(HDFS, Hive metastore, PostgreSQL from Debian's package; Kafka `external`: the test bed's broker
through its SCRAM pod listener, since Strimzi's images cannot be had, with the operator making
each component's own user as the broker's admin) and the operator chart. Every Kafka client
pod (producer, Spark driver and executors, predictor, dashboard) connects as its own user. The
pipeline replays the newest 100 days of the bundled real history in about 6 minutes; the driver
pod is killed mid-stream and the restart policy brings it back from its checkpoint. Every
stage's output is checked against the source: the candles on HDFS (and their Hive partitions)
equal an independent pandas computation over the trades in the topic, the training Job
registers a version and reports it, the predictor's forecasts follow the newest closed window,
the dashboard pod shows them in Chromium through `kubectl port-forward` (the README's route:
no ingress controller image can be had), and deleting the pipeline takes every child away. The
test reaches WebHDFS and the metastore through port-forwards too. When a test fails, every
pod's log and the namespace's events are kept under test-artifacts/.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import functools
import io
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import metastore_thrift_support as hms
import panel_render
import pyarrow.parquet as pq
import pytest
import yaml
from aggregate_support import TradeStream, mismatches, reference
from browser_support import ARTIFACTS, chromium, page_text, screenshot
from confluent_support import confluent_records
from kafka_support import end_offset, read_topic, scram_admin
from kind_support import differences, host_state
from node_support import against, get, helm, is_ready, kubeconfig, kubectl, port_forward, wait_for
from platform_support import THRIFT_PORT, WEBHDFS_PORT, Platform, Resolve, webhdfs
from prometheus_support import (
    ApiProxy,
    Prometheus,
    annotated_endpoints_job,
    annotated_pods_job,
    running_prometheus,
)
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from cryptopipe_jobs.producer import recorded, replay
from cryptopipe_jobs.producer.committed import CommittedRecords
from cryptopipe_operator.children.aggregator import spark_memory
from cryptopipe_operator.children.common import POOL_LABEL
from cryptopipe_operator.status import READY_REQUIRES
from cryptopipe_schemas import topics
from cryptopipe_schemas.codec import decode
from cryptopipe_schemas.registry import ResolvingIds, resolve
from cryptopipe_testbed import kind_cluster, versions
from cryptopipe_testbed.components import kube
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "scripts" / "cluster"
OPERATOR_CHART = ROOT / "charts" / "cryptopipe-operator"
# What scripts/cluster installs: its namespace and release names.
NAMESPACE = "cryptopipe"
PLATFORM_RELEASE = "cryptopipe-platform"
OPERATOR_RELEASE = "cryptopipe-operator"
CLUSTER = kind_cluster.CLUSTER
EXAMPLE = ROOT / "examples" / "replay.yaml"
EXAMPLE_MANIFEST = yaml.safe_load(EXAMPLE.read_text())
PIPELINE = EXAMPLE_MANIFEST["metadata"]["name"]
INTERVAL = "1h"
WATERMARK = EXAMPLE_MANIFEST["spec"]["watermark"]
RESUBMIT_MEMORY = "896Mi"  # the pool's Spark memory after the resize (768Mi before)
# The example joins its namespace's pool: the pool's SparkApplication aggregates it.
POOL = EXAMPLE_MANIFEST["spec"]["pool"]
POOL_APPLICATION = f"{POOL}-aggregator-pool"
HDFS_BASE = EXAMPLE_MANIFEST["spec"]["sinks"]["hdfs"]["path"]
HIVE_DATABASE = EXAMPLE_MANIFEST["spec"]["sinks"]["hive"]["database"]
# The newest 100 days of the bundled hourly history: 2,400 candles in 100 daily partitions,
# replayed in about 6 minutes, so that the driver can be killed while trades still arrive: on a
# fresh machine of this kind the first candle reached Hive 237 s after `kubectl apply`, when a
# 3-minute replay had already ended.
REPLAY_TAIL = EXAMPLE_MANIFEST["spec"]["source"]["replay"]["tail"]
CHILD_KINDS = "configmaps,services,deployments,jobs,cronjobs,ingresses,sparkapplications"
DATANODE_PORT = 9864
DASHBOARD_SERVICE_PORT = 80
DASHBOARD_SERVICE_ACCOUNT = "cryptopipe-dashboard"  # the platform chart's, for its default prefix


def pipeline_manifest(symbol: str) -> dict[str, Any]:
    """The README's replay example as it is, with only the symbol changed: new topics, a new
    checkpoint and a new registry on every run."""
    manifest: dict[str, Any] = copy.deepcopy(EXAMPLE_MANIFEST)
    manifest["spec"]["symbol"] = symbol
    return manifest


@dataclass
class CpuSampler:
    """CPU seconds of each pod of a namespace, from its cgroup (cpuacct, cgroup v1) inside the
    kind node container's, sampled while it runs: a finished pod's cgroup goes with it."""

    namespace: str
    root: Path
    seconds: dict[str, tuple[str, float]] = field(default_factory=dict)  # uid -> (stage, s)
    peak_rss: int = 0  # bytes, the node container's, at the samples
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, kind_cluster.resident_memory(CLUSTER))
        listed = get("pods", f"--namespace={self.namespace}") or {"items": []}
        for pod in listed["items"]:
            uid = pod["metadata"]["uid"]
            labels = pod["metadata"].get("labels", {})
            stage = labels.get("app.kubernetes.io/component") or labels.get(
                "spark-role", pod["metadata"]["name"]
            )
            if labels.get("spark-role"):
                stage = f"aggregator ({labels['spark-role']})"
            try:
                # The kubelet's systemd cgroup driver: ...-pod<uid, "_" for "-">.slice
                pattern = f"**/*pod{uid.replace('-', '_')}.slice/cpuacct.usage"
                for usage in self.root.glob(pattern):
                    used = int(usage.read_text()) / 1e9
                    self.seconds[uid] = (stage, max(used, self.seconds.get(uid, ("", 0.0))[1]))
            except FileNotFoundError:
                continue  # the pod's cgroup went while it was read: its last sample stands

    def run(self) -> None:
        while not self.stop.wait(5):
            self.sample()

    def by_stage(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for stage, used in self.seconds.values():
            out[stage] = round(out.get(stage, 0.0) + used, 1)
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class Stack:
    namespace: str
    platform: Platform
    symbol: str
    kafka: str  # the test bed's broker, from this machine
    registry: str  # the test bed's schema registry (Apicurio), from this machine
    host_before: dict[str, Any]
    timings: dict[str, float]


def container_logs(namespace: str) -> Iterator[tuple[str, str]]:
    """Every container's log in the namespace, previous runs too: (file name, text)."""
    pods = get("pods", f"--namespace={namespace}") or {"items": []}
    for pod in pods["items"]:
        name = pod["metadata"]["name"]
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            for previous in (False, True):
                result = kube.kubectl(
                    "logs", name, f"--namespace={namespace}", f"--container={container['name']}",
                    *(["--previous"] if previous else []), kubeconfig=kubeconfig(), timeout=60,
                )  # fmt: skip
                if result.returncode == 0 and result.stdout:
                    suffix = ".previous" if previous else ""
                    yield f"{name}.{container['name']}{suffix}.log", result.stdout


def keep_logs(namespace: str, folder: Path) -> None:
    """Every container's log (previous runs too) and the namespace's events and objects."""
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in container_logs(namespace):
        (folder / file_name).write_text(text)
    for what in ("events", "pods,jobs,deployments,sparkapplications,cryptopipelines"):
        result = kube.kubectl(
            "get",
            what,
            f"--namespace={namespace}",
            "-o",
            "yaml",
            kubeconfig=kubeconfig(),
            timeout=60,
        )
        (folder / f"{what.split(',')[0]}.yaml").write_text(result.stdout + result.stderr)


def secret_values(namespace: str) -> dict[str, str]:
    """What the namespace's Secrets hide (passwords, keys; not user names, not helm's release
    records), by where each is kept."""
    found: dict[str, str] = {}
    for secret in get("secrets", f"--namespace={namespace}")["items"]:
        if secret["type"].startswith("helm.sh/"):
            continue
        for key, encoded in (secret.get("data") or {}).items():
            value = base64.b64decode(encoded).decode(errors="replace")
            if key != "username" and len(value) >= 12:
                found[f"Secret {secret['metadata']['name']} {key}"] = value
    return found


def everything_said(namespace: str, home: Path) -> Iterator[tuple[str, str]]:
    """Where a secret must never appear, as (where, text): every container's log here and in
    the spark-operator's namespace, every event, ConfigMap, workload, SparkApplication and
    CryptoPipeline (its status) in the cluster, and the releases' rendered manifests but their
    Secrets."""
    yield from container_logs(namespace)
    yield from container_logs("spark-operator")
    kinds = "events,configmaps,pods,deployments,jobs,cronjobs,sparkapplications,cryptopipelines"
    yield kinds, kubectl("get", kinds, "--all-namespaces", "-o", "json")
    for release in (PLATFORM_RELEASE, OPERATOR_RELEASE):
        result = helm(home, namespace, "get", "manifest", release)
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] != "Secret"]
        yield f"helm get manifest {release}", yaml.safe_dump_all(docs)


# What one replay run must show on the dashboard (dead letters, late trades and the realized
# error may honestly stay empty).
PANELS_A_RUN_FILLS = {
    "Trades published per second",
    "Aggregation: batch duration",
    "Aggregator driver JVM heap",
    "Forecasts per hour",
    "Serving model",
    "Platform services up",
    "Operator: reconciles per second",
}


@contextlib.contextmanager
def kind_prometheus(folder: Path) -> Iterator[Prometheus]:
    """The test bed's Prometheus scraping every pod the `prometheus.io` annotations mark in the
    kind cluster's namespace, through the API server's pod proxy."""
    kubeconfig_file = kind_cluster.kubeconfig_path(CLUSTER)
    proxy = ApiProxy.from_kubeconfig(kubeconfig_file, folder / "prometheus-tls")
    jobs = [
        annotated_endpoints_job(kubeconfig_file, [NAMESPACE], proxy),
        annotated_pods_job(kubeconfig_file, [NAMESPACE], proxy),
    ]
    with running_prometheus(folder / "prometheus", jobs, "groups: []\n", interval="5s") as server:
        yield server


def cluster(*args: str, timeout: float = 2400) -> float:
    """`scripts/cluster ARGS --kind --offline`, as the README gives it; its seconds. Its output
    goes to the test's log as it comes."""
    argv = [str(CLUSTER_SCRIPT), *args, "--kind", "--offline"]
    print(f"$ {' '.join(argv)}", flush=True)
    began = time.monotonic()
    subprocess.run(argv, check=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return round(time.monotonic() - began, 1)


def tune_operator(home: Path) -> None:
    """Two settings of the operator chart for a test (a deviation from the README's defaults):
    reconcile every 5 s, not 30; and a finished replay's newest trade may be an hour old, not 5
    minutes, before DataFresh turns False."""
    result = helm(
        home, NAMESPACE, "upgrade", OPERATOR_RELEASE, str(OPERATOR_CHART), "--reuse-values",
        "--set", "operator.resyncSeconds=5", "--set", "platform.freshness.maxAgeSeconds=3600",
        "--wait", "--timeout=180s",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def kafka_user_of(pod: dict[str, Any]) -> str:
    """The Secret a pod's Kafka client takes its SCRAM user from (kafka.manageUsers)."""
    env = {e["name"]: e for e in pod["spec"]["containers"][0].get("env", [])}
    assert env["CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_PLAINTEXT"
    return str(env["CRYPTOPIPE_KAFKA_USERNAME"]["valueFrom"]["secretKeyRef"]["name"])


@pytest.fixture(scope="module")
def stack(
    testbed: TestbedSession,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    # The test bed's broker, which kind's pods reach through the address of its pod listener.
    env = testbed.ensure("kafka", "kube", "node", "images", "registry")
    host_kafka = env["CRYPTOPIPE_KAFKA_BOOTSTRAP"]
    if CLUSTER in kind_cluster.clusters():  # left by an interrupted run: start from none
        kind_cluster.delete(CLUSTER)
    subprocess.run([str(ROOT / "scripts" / "kind-offline"), "image"], check=True, timeout=1800)
    before = host_state()  # once the node image exists: building it is not the cluster's doing
    timings: dict[str, float] = {}
    home = tmp_path_factory.mktemp("helm")
    failed_before = request.session.testsfailed
    # The broker's SCRAM listener, as an authenticating managed Kafka: its admin made over
    # PLAINTEXT (the test bed's super user), handed to `scripts/cluster` as a user would.
    credentials = home / "kafka-admin"
    credentials.write_text("username={}\npassword={}\n".format(*scram_admin()))
    try:
        timings["scripts/cluster up"] = cluster(
            "up",
            "--kafka-bootstrap", env["CRYPTOPIPE_KAFKA_POD_SCRAM_BOOTSTRAP"],
            "--kafka-sasl", "SCRAM-SHA-512", "--kafka-admin-credentials", str(credentials),
            "--schema-registry-url", env["CRYPTOPIPE_SCHEMA_REGISTRY_POD_URL"],
        )  # fmt: skip
        with against(kind_cluster.kubeconfig_path(CLUSTER)):
            began = time.monotonic()
            tune_operator(home)
            timings["operator tuned"] = round(time.monotonic() - began, 1)
            platform = Platform(NAMESPACE, home, home / "unused", 0.0, release=PLATFORM_RELEASE)
            suffix = uuid.uuid4().hex[:6]
            try:
                registry = env["CRYPTOPIPE_SCHEMA_REGISTRY_URL"]
                symbol = f"E{suffix.upper()}USDT"
                yield Stack(NAMESPACE, platform, symbol, host_kafka, registry, before, timings)
            finally:
                if request.session.testsfailed > failed_before:
                    keep_logs(NAMESPACE, ARTIFACTS / f"cluster-pipeline-{suffix}")
    finally:
        if CLUSTER in kind_cluster.clusters():  # the test did not get to its own `down`
            cluster("down", "--delete-cluster", timeout=600)


@contextlib.contextmanager
def forwarded_platform(platform: Platform) -> Iterator[tuple[str, int, Resolve]]:
    """Port-forwards to the metastore, the NameNode and the DataNode, as a user reaches them
    from outside the cluster: the metastore's address and port, and WebHDFS's resolver."""
    metastore_pod = wait_for("the metastore", lambda: platform.ready_pod("hive-metastore"))
    namenode_pod = wait_for("the NameNode", lambda: platform.ready_pod("hdfs-namenode"))
    datanode_pod = wait_for("the DataNode", lambda: platform.ready_pod("hdfs-datanode"))
    ns = platform.namespace
    with (
        port_forward(ns, f"pod/{metastore_pod['metadata']['name']}", THRIFT_PORT) as thrift,
        port_forward(ns, f"pod/{namenode_pod['metadata']['name']}", WEBHDFS_PORT) as namenode,
        port_forward(ns, f"pod/{datanode_pod['metadata']['name']}", DATANODE_PORT) as datanode,
    ):

        def resolve(host: str, port: int) -> tuple[str, int]:
            # The NameNode redirects reads and writes to the DataNode by its cluster DNS name.
            return ("127.0.0.1", datanode if port == DATANODE_PORT else namenode)

        yield "127.0.0.1", thrift, resolve


def condition(namespace: str, kind: str) -> dict[str, Any] | None:
    pipeline = get("cpl", PIPELINE, f"--namespace={namespace}") or {}
    found = [c for c in pipeline.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else None


def condition_true(namespace: str, kind: str) -> dict[str, Any] | None:
    found = condition(namespace, kind)
    return found if found is not None and found["status"] == "True" else None


def pod_of(namespace: str, component: str) -> dict[str, Any] | None:
    """A Ready pod of one of the pool's shared components (the example is `isolation: shared`:
    its children carry the pool's label, not the pipeline's)."""
    selector = f"{POOL_LABEL}={POOL},app.kubernetes.io/component={component}"
    pods = (get("pods", f"--namespace={namespace}", "-l", selector) or {"items": []})["items"]
    return next((p for p in pods if is_ready(p)), None)


def hdfs_files(namespace: str, resolve: Resolve, folder: str) -> list[str]:
    """Paths of the data files under an HDFS folder (WebHDFS LISTSTATUS, recursively)."""
    status, body = webhdfs(namespace, "namenode", "GET", folder, "LISTSTATUS", resolve=resolve)
    if status == 404:
        return []
    assert status == 200, body
    out: list[str] = []
    for entry in json.loads(body)["FileStatuses"]["FileStatus"]:
        path = f"{folder}/{entry['pathSuffix']}"
        if entry["type"] == "DIRECTORY":
            out += hdfs_files(namespace, resolve, path)
        elif path.endswith(".parquet") and not entry["pathSuffix"].startswith(("_", ".")):
            out.append(path)
    return out


def parquet_candles(namespace: str, resolve: Resolve, symbol: str) -> list[dict[str, Any]]:
    """Every candle row on HDFS, with the partition columns its path carries."""
    folder = f"{HDFS_BASE}/candles/symbol={symbol}/interval={INTERVAL}"
    rows: list[dict[str, Any]] = []
    for path in hdfs_files(namespace, resolve, folder):
        status, body = webhdfs(namespace, "namenode", "GET", path, "OPEN", resolve=resolve)
        assert status == 200, body[:200]
        for row in pq.read_table(io.BytesIO(body)).to_pylist():
            rows.append({**row, "symbol": symbol, "interval": INTERVAL})
    return rows


def assert_dashboard_reads_only_pipelines(namespace: str) -> None:
    """The dashboards' ServiceAccount may get, list and watch CryptoPipelines in its namespace,
    and nothing else (asked of the API server's authorizer)."""
    who = f"--as=system:serviceaccount:{namespace}:{DASHBOARD_SERVICE_ACCOUNT}"

    def can(*what: str) -> bool:
        answer = kubectl("auth", "can-i", who, *what, check=False).strip()
        return answer == "yes"

    for verb in ("get", "list", "watch"):
        assert can(verb, "cryptopipelines.cryptopipe.io", f"--namespace={namespace}"), verb
    refused = [
        ("create", "cryptopipelines.cryptopipe.io", f"--namespace={namespace}"),
        ("patch", "cryptopipelines.cryptopipe.io", f"--namespace={namespace}"),
        ("list", "cryptopipelines.cryptopipe.io", "--namespace=kube-system"),
        ("list", "pods", f"--namespace={namespace}"),
        ("get", "secrets", f"--namespace={namespace}"),
        ("list", "configmaps", f"--namespace={namespace}"),
    ]
    for what in refused:
        assert not can(*what), what


def first_batch_id(namespace: str, driver_pod: str) -> int | None:
    """The id of the first micro-batch a driver logged (its JSON `batch` lines), if any yet."""
    logs = kubectl(
        "logs", driver_pod, f"--namespace={namespace}", "--container=spark-kubernetes-driver",
        check=False,
    )  # fmt: skip
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("message") == "batch" and "batch_id" in entry:
            return int(entry["batch_id"])
    return None


def checkpoint_argument(app: dict[str, Any]) -> str:
    """Where the aggregator checkpoints: its --checkpoint, the one place that sets it."""
    arguments: list[str] = app["spec"]["arguments"]
    return arguments[arguments.index("--checkpoint") + 1]


@pytest.mark.timeout(2700)  # `scripts/cluster up` in the set-up counts too
def test_apply_to_candles_model_forecasts_and_dashboard_then_delete(
    stack: Stack, tmp_path: Path
) -> None:
    # One kind node, Ready, of the version the node image was built for.
    (kind_node,) = get("nodes")["items"]
    assert {c["type"]: c["status"] for c in kind_node["status"]["conditions"]}["Ready"] == "True"
    assert kind_node["status"]["nodeInfo"]["kubeletVersion"] == versions.KUBERNETES
    with (
        forwarded_platform(stack.platform) as (metastore, thrift_port, resolve),
        kind_prometheus(tmp_path) as prometheus,
    ):
        began = time.time()
        run_pipeline(stack, tmp_path, metastore, thrift_port, resolve)
        # The chart's Grafana dashboard, each panel's queries answered by the real Prometheus
        # that scraped the pods during the run.
        picture = ARTIFACTS / "cluster-pipeline-dashboard.png"
        counts = panel_render.render(prometheus, began, time.time(), picture)
    empty = sorted(title for title, series in counts.items() if not series)
    print(f"dashboard: {picture}; panels with data {len(counts) - len(empty)} of {len(counts)}, "
          f"empty: {empty}")  # fmt: skip
    assert not set(empty) & PANELS_A_RUN_FILLS, empty
    peak = kind_cluster.peak_memory(CLUSTER)
    print(f"the kind node container's peak memory from `kubectl apply` on, page cache "
          f"included: {peak / 2**30:.2f} GiB")  # fmt: skip

    # The README's last step: every release uninstalled and the cluster deleted, leaving the
    # host as it was before `scripts/cluster up`.
    stack.timings["scripts/cluster down --delete-cluster"] = cluster("down", "--delete-cluster")
    print(f"timings: {stack.timings}")
    assert CLUSTER not in kind_cluster.clusters()
    left = differences(stack.host_before, host_state())
    assert not left, f"the host changed: {left}"


def registry_records(stack: Stack, topic: str) -> list[dict[str, Any]]:
    """A topic's records as our readers decode them (ids from the registry the pods registered
    our schemas in), checked against Confluent's own deserializer and registry client."""
    values = read_topic(stack.kafka, topic)
    ids = ResolvingIds(stack.registry)
    framed = {int.from_bytes(value[1:5], "big") for value in values}
    assert all(resolve(stack.registry, found) for found in framed), framed  # registry ids only
    ours = [decode(value, ids=ids).record for value in values]
    assert confluent_records(stack.kafka, topic, stack.registry, len(ours)) == ours, topic
    return ours


def run_pipeline(
    stack: Stack, tmp_path: Path, metastore: str, thrift_port: int, resolve: Resolve
) -> None:
    ns, symbol, host_kafka = stack.namespace, stack.symbol, stack.kafka
    trades_topic, forecasts_topic = topics.trades(symbol), topics.forecasts(symbol)
    replayed = recorded.load_embedded()[-REPLAY_TAIL:]
    total = len(replay.klines_to_trades(replayed, symbol, "coinbase"))
    kind_cluster.reset_peak_memory(CLUSTER)
    sampler = CpuSampler(ns, kind_cluster.node_cgroup("cpuacct", CLUSTER))
    sampling = threading.Thread(target=sampler.run, daemon=True)
    sampling.start()
    timings = stack.timings
    began, applied_at = time.monotonic(), time.time()

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - began, 1)
        print(f"kubectl apply -> {what}: {timings[what]} s")

    kubectl("apply", f"--namespace={ns}", "-f", "-", stdin=json.dumps(pipeline_manifest(symbol)))

    # The aggregator: the real spark-operator submits it; driver and executor run on the node.
    wait_for(
        "AggregatorRunning from the SparkApplication",
        lambda: condition_true(ns, "AggregatorRunning"),
        420,
    )
    app = get("sparkapplication", POOL_APPLICATION, f"--namespace={ns}")
    assert app["status"]["applicationState"]["state"] == "RUNNING"
    mark("SparkApplication RUNNING")

    def running_spark_pods() -> list[dict[str, Any]]:
        pods = get("pods", f"--namespace={ns}", "-l", "spark-role")["items"]
        roles = {p["metadata"]["labels"]["spark-role"] for p in pods if is_ready(p)}
        return pods if roles >= {"driver", "executor"} else []

    spark_pods = wait_for("the driver and an executor running", running_spark_pods, 300)
    node_name = kind_cluster.node_container(CLUSTER)
    assert all(p["spec"]["nodeName"] == node_name for p in spark_pods)
    # Every Kafka client of the pool connects as its component's own SCRAM user.
    assert {kafka_user_of(p) for p in spark_pods} == {f"{POOL}-kafka-aggregator-pool"}

    def hive_partitions() -> list[str]:
        try:
            names = hms.get_partition_names(metastore, thrift_port, HIVE_DATABASE, "candles")
        except hms.MetastoreError:
            return []
        return [n for n in names if n.startswith(f"symbol={symbol}/")]

    wait_for("a candle partition in Hive", hive_partitions, 420)
    mark("first candle in Hive")

    # Kill the driver mid-stream: the SparkApplication's restart policy resubmits it, and it
    # continues from its checkpoint on HDFS (checked below: every candle exactly once).
    (driver,) = [p for p in spark_pods if p["metadata"]["labels"]["spark-role"] == "driver"]
    published_trades = CommittedRecords(host_kafka, trades_topic)
    published = published_trades.count()
    assert published < total, "the replay ended before the driver was killed: slow it down"
    kubectl("delete", "pod", driver["metadata"]["name"], f"--namespace={ns}",
            "--grace-period=0", "--force")  # fmt: skip
    print(f"driver killed after {published} of {total} trades")

    def driver_back() -> dict[str, Any] | None:
        pods = get("pods", f"--namespace={ns}", "-l", "spark-role=driver")["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] != driver["metadata"]["uid"]]
        return fresh[0] if fresh and is_ready(fresh[0]) else None

    back = wait_for("a new driver from the restart policy", driver_back, 300)
    mark("driver back after the kill")

    # The pool resized (its Spark pods' memory, an operator chart value): the operator changes
    # the pool's SparkApplication, and the spark-operator kills the running application and
    # submits the new spec. The checkpoint's location depends only on the pool, so the new
    # driver continues at the next batch, not at batch 0.
    checkpoint = checkpoint_argument(app)
    earlier = {driver["metadata"]["uid"], back["metadata"]["uid"]}
    resized = helm(
        stack.platform.home, NAMESPACE, "upgrade", OPERATOR_RELEASE, str(OPERATOR_CHART),
        "--reuse-values", "--set", f"platform.pools.aggregatorMemory={RESUBMIT_MEMORY}",
        "--wait", "--timeout=180s",
    )  # fmt: skip
    assert resized.returncode == 0, resized.stderr

    def resubmitted() -> dict[str, Any] | None:
        current = get("sparkapplication", POOL_APPLICATION, f"--namespace={ns}")
        if current["spec"]["driver"]["memory"] != spark_memory(RESUBMIT_MEMORY):
            return None
        pods = get("pods", f"--namespace={ns}", "-l", "spark-role=driver")["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] not in earlier and is_ready(p)]
        return fresh[0] if fresh else None

    third = wait_for("the driver resubmitted with the new spec", resubmitted, 300)
    mark("driver resubmitted after the pool was resized")
    current = get("sparkapplication", POOL_APPLICATION, f"--namespace={ns}")
    assert checkpoint_argument(current) == checkpoint
    first_batch = wait_for(
        "the resubmitted driver's first batch",
        lambda: first_batch_id(ns, third["metadata"]["name"]),
        300,
    )
    assert first_batch > 0, "the resubmitted driver started over instead of from its checkpoint"
    print(f"resubmitted driver continued at batch {first_batch}")

    wait_for("the whole replay in Kafka", lambda: published_trades.count() >= total, 300)
    mark("replay published")
    published_trades.close()

    # Candles equal an independent computation over the trades that are in the topic.
    trades = registry_records(stack, trades_topic)
    assert len(trades) == total
    expected = reference(TradeStream([trades], garbage=0), [INTERVAL], WATERMARK).candles
    wait_for(
        f"all {len(expected)} final candles on HDFS",
        lambda: len(parquet_candles(ns, resolve, symbol)) >= len(expected),
        420,
    )
    mark("every candle on HDFS")
    candles = parquet_candles(ns, resolve, symbol)
    problems = mismatches(candles, expected)
    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"
    dates = {
        f"symbol={symbol}/interval={INTERVAL}/date={c['window_start']:%Y-%m-%d}" for c in candles
    }
    assert set(hive_partitions()) == dates

    # Training: the Job waited for the candles, trained and reported through its pod.
    trained = wait_for("ModelTrained", lambda: condition_true(ns, "ModelTrained"), 900)
    mark("model trained (seen by the test)")
    jobs = get("jobs", f"--namespace={ns}", "-l", "app.kubernetes.io/component=trainer")["items"]
    done = min(dt.datetime.fromisoformat(j["status"]["completionTime"]) for j in jobs)
    timings["training Job completed"] = round(done.timestamp() - applied_at, 1)
    promoted = wait_for(
        "ModelPromoted decided",
        lambda: (c := condition(ns, "ModelPromoted")) and c["status"] != "Unknown" and c,
        120,
    )
    assert promoted["status"] == "True" or promoted["reason"] == "BelowBaseline", promoted
    print(f"ModelTrained: {trained['message']}")
    print(f"ModelPromoted {promoted['status']}: {promoted['message']}")

    # Forecasts: the predictor names what made each; they follow the newest closed window.
    wait_for("a forecast", lambda: end_offset(host_kafka, forecasts_topic) > 0, 600)
    mark("a forecast (seen by the test)")
    forecasts = registry_records(stack, forecasts_topic)
    candles_topic = topics.candles(INTERVAL, symbol)
    assert len(registry_records(stack, candles_topic)) >= len(expected)  # finals, and updates
    newest = max(c["window_end"] for c in expected.to_dict("records"))
    made = max(f["made_at"] for f in forecasts)
    assert made == newest, (made, newest)  # from the newest closed window
    assert all(f["model"] for f in forecasts)
    print(f"{len(forecasts)} forecasts by {sorted({f['model'] for f in forecasts})}")
    first_emitted = min(f["ingest_time"] for f in forecasts).timestamp()
    timings["first forecast emitted"] = round(first_emitted - applied_at, 1)

    # The dashboard shows the candles and a forecast, through the README's route: a
    # port-forward to its Service.
    wait_for("the dashboard pod Ready", lambda: pod_of(ns, "dashboard"), 300)
    for component in ("producer", "predictor", "dashboard"):
        pod = wait_for(f"the {component} pod Ready", functools.partial(pod_of, ns, component), 300)
        assert kafka_user_of(pod) == f"{POOL}-kafka-{component}-pool", component
    with (
        port_forward(ns, f"svc/{POOL}-dashboard-pool", DASHBOARD_SERVICE_PORT) as local,
        chromium(tmp_path / "chromium") as driver,
    ):
        driver.get(f"http://127.0.0.1:{local}/")
        try:
            WebDriverWait(driver, 180, poll_frequency=2).until(lambda d: "Serving:" in page_text(d))
        except TimeoutException:
            shot = screenshot(driver, "cluster-pipeline-dashboard-timeout")
            pytest.fail(f"no forecast on the dashboard (screenshot {shot}):\n{page_text(driver)}")
        mark("forecast on the dashboard")
        time.sleep(3)  # let the chart draw
        print(f"screenshot: {screenshot(driver, 'cluster-pipeline-dashboard')}")
        assert "Traceback" not in page_text(driver)

        # Its Pipelines page lists this namespace's CryptoPipelines through the API server, as
        # the dashboard's own read-only ServiceAccount (not "Local mode").
        driver.get(f"http://127.0.0.1:{local}/pipelines")
        listed = f"{PIPELINE} ({symbol})"
        try:
            WebDriverWait(driver, 120, poll_frequency=2).until(
                lambda d: listed in page_text(d) and "last forecast:" in page_text(d)
            )
        except TimeoutException:
            shot = screenshot(driver, "cluster-pipeline-pipelines-timeout")
            pytest.fail(f"no {listed} on the Pipelines page ({shot}):\n{page_text(driver)}")
        text = page_text(driver)
        assert "Local mode" not in text and "Traceback" not in text, text
        print(f"screenshot: {screenshot(driver, 'cluster-pipeline-pipelines')}")
    assert_dashboard_reads_only_pipelines(ns)

    # `kubectl get cpl`: Ready, and every condition Ready needs true, DataFresh too (from the
    # producer pod's metrics). Not among them: ModelPromoted, which may honestly be False
    # with BelowBaseline.
    ready = wait_for("Ready", lambda: condition_true(ns, "Ready"), 300)
    pipeline = get("cpl", PIPELINE, f"--namespace={ns}")
    needed = {
        c["type"]: c["status"]
        for c in pipeline["status"]["conditions"]
        if c["type"] in (*READY_REQUIRES, "DataFresh")
    }
    expected_true = dict.fromkeys((*READY_REQUIRES, "DataFresh"), "True")
    assert needed == expected_true, pipeline["status"]["conditions"]
    print(f"Ready {ready['status']}: {ready['message']}")
    sampler.sample()
    sampler.stop.set()
    print(f"CPU seconds per stage: {sampler.by_stage()}")
    print(f"the kind node container's resident memory, peak of the samples: "
          f"{sampler.peak_rss / 2**30:.2f} GiB")  # fmt: skip

    # No password or key of the run's Secrets (the Kafka admin's and its user key, each
    # component's Kafka user, the metastore's database) in any log, event, ConfigMap, object,
    # status or rendered manifest: they reach pods only as secretKeyRef or Secret volumes.
    hidden = secret_values(ns)
    assert len(hidden) >= 6, sorted(hidden)  # admin password and user key, 4 users, database
    leaks = [
        f"{what} in {where}"
        for where, text in everything_said(ns, stack.platform.home)
        for what, value in hidden.items()
        if value in text
    ]
    assert not leaks, leaks
    print(f"no secret in any log, event, object or manifest: {len(hidden)} values searched")

    # Deleting the pipeline: every child and every pod goes.
    kubectl("delete", "cpl", PIPELINE, f"--namespace={ns}", "--wait=true", "--timeout=120s")

    def gone() -> bool:
        children = get(CHILD_KINDS, f"--namespace={ns}", "-l", f"cryptopipe.io/pipeline={PIPELINE}")
        # The pool's own children too: their last owner is gone.
        shared = get(CHILD_KINDS, f"--namespace={ns}", "-l", f"cryptopipe.io/pool={POOL}")
        pods = get(
            "pods", f"--namespace={ns}", "-l", "app.kubernetes.io/managed-by=cryptopipe-operator"
        )
        spark = get("pods", f"--namespace={ns}", "-l", "spark-role")
        return not (children["items"] or shared["items"] or pods["items"] or spark["items"])

    wait_for("every child and pod gone", gone, 180)
