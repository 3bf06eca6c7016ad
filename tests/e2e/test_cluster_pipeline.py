"""The whole pipeline in real pods, as docs/cluster.md tells a user, on the test
bed's real node: from `kubectl apply` of one CryptoPipeline to forecasts on the dashboard.

The platform chart (HDFS, Hive metastore, PostgreSQL; Kafka `external`: the test bed's broker
through its pod listener) and the operator chart (values from the platform's ConfigMap) are
installed with helm; the Kubeflow spark-operator's controller (test bed component `sparkop`)
runs the aggregator's SparkApplication, so its driver and executor are real pods. The pipeline
replays the newest 100 days of the bundled real history in about 3 minutes; the driver pod is
killed mid-stream and the restart policy brings it back from its checkpoint. Every stage's
output is checked against the source: the candles on HDFS (and their Hive partitions) equal an
independent pandas computation over the trades in the topic, the training Job registers a
version and reports it, the predictor's forecasts follow the newest closed window, the
dashboard pod shows them in Chromium, and deleting the pipeline takes every child away. When a
test fails, every pod's log and the namespace's events are kept under test-artifacts/.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import metastore_thrift_support as hms
import pyarrow.parquet as pq
import pytest
import yaml
from aggregate_support import TradeStream, mismatches, reference
from browser_support import ARTIFACTS, chromium, page_text, screenshot
from kafka_support import end_offset, read_topic
from node_support import get, is_ready, kubectl, port_forward, wait_for
from platform_support import THRIFT_PORT, Platform, installed, load_images, webhdfs
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from cryptopipe_jobs.producer import recorded, replay
from cryptopipe_jobs.producer.committed import CommittedRecords
from cryptopipe_operator.children.aggregator import spark_memory
from cryptopipe_operator.status import READY_REQUIRES
from cryptopipe_schemas import topics
from cryptopipe_schemas.codec import decode
from cryptopipe_testbed import upstream_crds
from cryptopipe_testbed.components import images, kafka, kube, node, spark_operator
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_CHART = ROOT / "charts" / "cryptopipe-operator"
OPERATOR_RELEASE = "cryptopipe-operator"
PIPELINE = "replay-e2e"
HOST_KAFKA = f"{kafka.HOST}:{kafka.BROKER_PORT}"
REAL = {node.NODE_LABEL[0]: node.NODE_LABEL[1]}
INTERVAL = "1h"
WATERMARK = "2m"
RESUBMIT_MEMORY = "896Mi"  # the aggregator's memory after the spec change (768Mi before)
HDFS_BASE = "/cryptopipe"
# The newest 100 days of the bundled hourly history: 2,400 candles in 100 daily partitions,
# replayed in about 6 minutes, so that the driver can be killed while trades still arrive: on a
# fresh machine of this kind the first candle reached Hive 237 s after `kubectl apply`, when a
# 3-minute replay had already ended.
REPLAY_TAIL = 2400
REPLAY_SPEED = 25_000
HIVE_DATABASE = "cryptopipe"
CHILD_KINDS = "configmaps,services,deployments,jobs,cronjobs,ingresses,sparkapplications"
KUBEPODS_MEMORY = Path("/sys/fs/cgroup/memory/kubepods")
KUBEPODS_CPU = Path("/sys/fs/cgroup/cpuacct/kubepods")


def pipeline_manifest(symbol: str) -> dict[str, Any]:
    """The example's replay pipeline, sized for 2 shared cores: a small model evaluated on the
    newest 1,500 hours, and small requests for every pod."""
    return {
        "apiVersion": "cryptopipe.io/v1alpha1",
        "kind": "CryptoPipeline",
        "metadata": {"name": PIPELINE},
        "spec": {
            "symbol": symbol,
            "source": {
                "kind": "replay",
                "replay": {
                    "data": "embedded",
                    "speed": REPLAY_SPEED,
                    "shiftToNow": True,
                    "tail": REPLAY_TAIL,
                },
            },
            "intervals": [INTERVAL],
            "watermark": WATERMARK,
            "sinks": {
                "hdfs": {"enabled": True, "path": HDFS_BASE},
                "hive": {"enabled": True, "database": HIVE_DATABASE},
                "kafka": {"enabled": True, "partitions": 1, "replication": 1},
                "sheets": {"enabled": False},
            },
            "model": {
                "interval": INTERVAL,
                "lookback": 24,
                "horizon": 3,
                "layers": 1,
                "units": 16,
                "epochs": 3,
                "history": 1500,
                "testSize": 100,
                "folds": 1,
                "schedule": "0 3 * * *",
            },
            "dashboard": {"enabled": True, "host": "replay-e2e.cryptopipe.local"},
            "resources": {
                "producer": {"cpu": "50m", "memory": "256Mi"},
                "aggregator": {"cpu": "250m", "memory": "768Mi"},
                "trainer": {"cpu": "250m", "memory": "1536Mi"},
                "predictor": {"cpu": "50m", "memory": "768Mi"},
                "dashboard": {"cpu": "50m", "memory": "384Mi"},
            },
        },
    }


@dataclass
class CpuSampler:
    """CPU seconds of each pod of a namespace, from its cgroup (cpuacct, cgroup v1), sampled
    while it runs: a finished pod's cgroup goes with it."""

    namespace: str
    seconds: dict[str, tuple[str, float]] = field(default_factory=dict)  # uid -> (stage, s)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
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
                for usage in KUBEPODS_CPU.glob(f"**/pod{uid}/cpuacct.usage"):
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
    operator_values: Path
    symbol: str


def keep_logs(namespace: str, folder: Path) -> None:
    """Every container's log (previous runs too) and the namespace's events and objects."""
    folder.mkdir(parents=True, exist_ok=True)
    pods = get("pods", f"--namespace={namespace}") or {"items": []}
    for pod in pods["items"]:
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            for previous in (False, True):
                result = kube.kubectl(
                    "logs", name, f"--namespace={namespace}", f"--container={container['name']}",
                    *(["--previous"] if previous else []), timeout=60,
                )  # fmt: skip
                if result.returncode == 0 and result.stdout:
                    suffix = ".previous" if previous else ""
                    (folder / f"{name}.{container['name']}{suffix}.log").write_text(result.stdout)
    for what in ("events", "pods,jobs,deployments,sparkapplications,cryptopipelines"):
        result = kube.kubectl("get", what, f"--namespace={namespace}", "-o", "yaml", timeout=60)
        (folder / f"{what.split(',')[0]}.yaml").write_text(result.stdout + result.stderr)


@pytest.fixture(scope="module")
def stack(
    testbed: TestbedSession,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    env = testbed.ensure("kafka", "kube", "node", "images", "sparkop")
    imported = load_images(extra=("operator", "spark", "trainer", "dashboard"))
    print(f"images imported into containerd (seconds; 0.0: already there): {imported}")
    # Helm installs a chart's CRD only when it is absent: apply ours, which may be newer.
    for path in [*upstream_crds.crd_files(), *sorted((OPERATOR_CHART / "crds").glob("*.yaml"))]:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    suffix = uuid.uuid4().hex[:6]
    namespace = f"e2e-{suffix}"
    home = tmp_path_factory.mktemp("helm")
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "=".join(spark_operator.NAMESPACE_LABEL))
    failed_before = request.session.testsfailed
    try:
        with installed(env, home, namespace) as platform:
            info = get("configmap", "cryptopipe-platform", f"--namespace={namespace}")
            values = yaml.safe_load(info["data"]["operator-values.yaml"])
            values["platform"]["scheduling"] = {"nodeSelector": REAL}
            # A finished replay's newest trade only ages: an hour, not the default 5 minutes.
            values["platform"]["freshness"] = {"enabled": True, "maxAgeSeconds": 3600}
            values |= {
                # Unique: the chart's ClusterRoles are named after it.
                "fullnameOverride": f"cpo-e2e-{suffix}",
                "image": {"registry": images.registry(), "tag": images.project_version()},
                "nodeSelector": REAL,
                "watchNamespaces": [namespace],
                "operator": {"resyncSeconds": 5},
            }
            operator_values = home / "operator-values.yaml"
            operator_values.write_text(yaml.safe_dump(values))
            result = platform.helm(
                "install", OPERATOR_RELEASE, str(OPERATOR_CHART), "-f", str(operator_values),
                "--wait", "--timeout=180s",
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            try:
                yield Stack(namespace, platform, operator_values, f"E{suffix.upper()}USDT")
            finally:
                if request.session.testsfailed > failed_before:
                    keep_logs(namespace, ARTIFACTS / f"cluster-pipeline-{namespace}")
                platform.helm("uninstall", OPERATOR_RELEASE, "--wait", "--timeout=90s")
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def condition(namespace: str, kind: str) -> dict[str, Any] | None:
    pipeline = get("cpl", PIPELINE, f"--namespace={namespace}") or {}
    found = [c for c in pipeline.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else None


def condition_true(namespace: str, kind: str) -> dict[str, Any] | None:
    found = condition(namespace, kind)
    return found if found is not None and found["status"] == "True" else None


def pod_of(namespace: str, component: str) -> dict[str, Any] | None:
    selector = f"cryptopipe.io/pipeline={PIPELINE},app.kubernetes.io/component={component}"
    pods = (get("pods", f"--namespace={namespace}", "-l", selector) or {"items": []})["items"]
    return next((p for p in pods if is_ready(p)), None)


def hdfs_files(namespace: str, namenode: str, folder: str) -> list[str]:
    """Paths of the data files under an HDFS folder (WebHDFS LISTSTATUS, recursively)."""
    status, body = webhdfs(namespace, namenode, "GET", folder, "LISTSTATUS")
    if status == 404:
        return []
    assert status == 200, body
    out: list[str] = []
    for entry in json.loads(body)["FileStatuses"]["FileStatus"]:
        path = f"{folder}/{entry['pathSuffix']}"
        if entry["type"] == "DIRECTORY":
            out += hdfs_files(namespace, namenode, path)
        elif path.endswith(".parquet") and not entry["pathSuffix"].startswith(("_", ".")):
            out.append(path)
    return out


def parquet_candles(namespace: str, namenode: str, symbol: str) -> list[dict[str, Any]]:
    """Every candle row on HDFS, with the partition columns its path carries."""
    folder = f"{HDFS_BASE}/candles/symbol={symbol}/interval={INTERVAL}"
    rows: list[dict[str, Any]] = []
    for path in hdfs_files(namespace, namenode, folder):
        status, body = webhdfs(namespace, namenode, "GET", path, "OPEN")
        assert status == 200, body[:200]
        for row in pq.read_table(io.BytesIO(body)).to_pylist():
            rows.append({**row, "symbol": symbol, "interval": INTERVAL})
    return rows


# The module's set-up (images, the platform's install) counts too: about 7 minutes in all here.
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


@pytest.mark.timeout(1800)
def test_apply_to_candles_model_forecasts_and_dashboard_then_delete(
    stack: Stack, tmp_path: Path
) -> None:
    ns, symbol = stack.namespace, stack.symbol
    trades_topic, forecasts_topic = topics.trades(symbol), topics.forecasts(symbol)
    replayed = recorded.load_embedded()[-REPLAY_TAIL:]
    total = len(replay.klines_to_trades(replayed, symbol, "coinbase"))
    if KUBEPODS_MEMORY.exists():
        (KUBEPODS_MEMORY / "memory.max_usage_in_bytes").write_text("0")  # reset the peak
    sampler = CpuSampler(ns)
    sampling = threading.Thread(target=sampler.run, daemon=True)
    sampling.start()
    timings: dict[str, float] = {}
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
    app = get("sparkapplication", f"{PIPELINE}-aggregator", f"--namespace={ns}")
    assert app["status"]["applicationState"]["state"] == "RUNNING"
    mark("SparkApplication RUNNING")

    def running_spark_pods() -> list[dict[str, Any]]:
        pods = get("pods", f"--namespace={ns}", "-l", "spark-role")["items"]
        roles = {p["metadata"]["labels"]["spark-role"] for p in pods if is_ready(p)}
        return pods if roles >= {"driver", "executor"} else []

    spark_pods = wait_for("the driver and an executor running", running_spark_pods, 300)
    assert all(p["spec"]["nodeName"] == node.NODE_NAME for p in spark_pods)

    namenode = stack.platform.ip("hdfs-namenode")
    metastore = stack.platform.ip("hive-metastore")

    def hive_partitions() -> list[str]:
        try:
            names = hms.get_partition_names(metastore, THRIFT_PORT, HIVE_DATABASE, "candles")
        except hms.MetastoreError:
            return []
        return [n for n in names if n.startswith(f"symbol={symbol}/")]

    wait_for("a candle partition in Hive", hive_partitions, 420)
    mark("first candle in Hive")

    # Kill the driver mid-stream: the SparkApplication's restart policy resubmits it, and it
    # continues from its checkpoint on HDFS (checked below: every candle exactly once).
    (driver,) = [p for p in spark_pods if p["metadata"]["labels"]["spark-role"] == "driver"]
    published_trades = CommittedRecords(HOST_KAFKA, trades_topic)
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

    # A spec change that needs the job resubmitted (the aggregator's memory): the spark-operator
    # kills the running application and submits the new spec. The checkpoint's location depends
    # only on the pipeline, so the new driver continues at the next batch, not at batch 0.
    checkpoint = checkpoint_argument(app)
    earlier = {driver["metadata"]["uid"], back["metadata"]["uid"]}
    change = {"spec": {"resources": {"aggregator": {"memory": RESUBMIT_MEMORY}}}}
    kubectl("patch", "cpl", PIPELINE, f"--namespace={ns}", "--type=merge", "-p", json.dumps(change))

    def resubmitted() -> dict[str, Any] | None:
        current = get("sparkapplication", f"{PIPELINE}-aggregator", f"--namespace={ns}")
        if current["spec"]["driver"]["memory"] != spark_memory(RESUBMIT_MEMORY):
            return None
        pods = get("pods", f"--namespace={ns}", "-l", "spark-role=driver")["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] not in earlier and is_ready(p)]
        return fresh[0] if fresh else None

    third = wait_for("the driver resubmitted with the new spec", resubmitted, 300)
    mark("driver resubmitted after a spec change")
    current = get("sparkapplication", f"{PIPELINE}-aggregator", f"--namespace={ns}")
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
    trades = [decode(value).record for value in read_topic(HOST_KAFKA, trades_topic)]
    assert len(trades) == total
    expected = reference(TradeStream([trades], garbage=0), [INTERVAL], WATERMARK).candles
    wait_for(
        f"all {len(expected)} final candles on HDFS",
        lambda: len(parquet_candles(ns, namenode, symbol)) >= len(expected),
        420,
    )
    mark("every candle on HDFS")
    candles = parquet_candles(ns, namenode, symbol)
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
    wait_for("a forecast", lambda: end_offset(HOST_KAFKA, forecasts_topic) > 0, 600)
    mark("a forecast (seen by the test)")
    forecasts = [decode(value).record for value in read_topic(HOST_KAFKA, forecasts_topic)]
    newest = max(c["window_end"] for c in expected.to_dict("records"))
    made = max(f["made_at"] for f in forecasts)
    assert made == newest, (made, newest)  # from the newest closed window
    assert all(f["model"] for f in forecasts)
    print(f"{len(forecasts)} forecasts by {sorted({f['model'] for f in forecasts})}")
    first_emitted = min(f["ingest_time"] for f in forecasts).timestamp()
    timings["first forecast emitted"] = round(first_emitted - applied_at, 1)

    # The dashboard pod shows the candles and a forecast, through port-forward.
    pod = wait_for("the dashboard pod Ready", lambda: pod_of(ns, "dashboard"), 300)
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    with (
        port_forward(ns, f"pod/{pod['metadata']['name']}", port) as local,
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
    if KUBEPODS_MEMORY.exists():
        peak = int((KUBEPODS_MEMORY / "memory.max_usage_in_bytes").read_text())
        print(f"peak memory of the node's pods: {peak / 2**30:.2f} GiB")
    print(f"CPU seconds per stage: {sampler.by_stage()}")
    print(f"timings: {timings}")

    # Deleting the pipeline: every child and every pod goes.
    kubectl("delete", "cpl", PIPELINE, f"--namespace={ns}", "--wait=true", "--timeout=120s")

    def gone() -> bool:
        children = get(CHILD_KINDS, f"--namespace={ns}", "-l", f"cryptopipe.io/pipeline={PIPELINE}")
        pods = get(
            "pods", f"--namespace={ns}", "-l", "app.kubernetes.io/managed-by=cryptopipe-operator"
        )
        spark = get("pods", f"--namespace={ns}", "-l", "spark-role")
        return not (children["items"] or pods["items"] or spark["items"])

    wait_for("every child and pod gone", gone, 180)
