"""The operator end to end on the test bed's real API server, controllers and kwok.

helm installs the chart (CRD, RBAC, ServiceAccount, Deployment pinned to the fake node); the
upstream Strimzi and spark-operator CRDs come from their published artifacts; the operator runs
here as a subprocess with the chart's ServiceAccount token (exactly the chart's RBAC). The test
plays Strimzi and spark-operator by writing their status; kwok runs the pods.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    NewTopic,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka.errors import TopicAuthorizationFailedError
from kafka_support import scram_admin
from net_support import free_port
from node_support import restricted_namespace, wait_for

from cryptopipe_schemas import topics
from cryptopipe_testbed import upstream_crds
from cryptopipe_testbed.components.kube import (
    FAKE_NODE_LABEL,
    FAKE_NODE_TAINT,
    service_account_kubeconfig,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cryptopipe-operator"
EXAMPLES = ROOT / "examples"
TOLERATION = {
    "key": FAKE_NODE_TAINT[0],
    "operator": "Equal",
    "value": FAKE_NODE_TAINT[1],
    "effect": FAKE_NODE_TAINT[2],
}
SELECTOR = {FAKE_NODE_LABEL[0]: FAKE_NODE_LABEL[1]}


class Kube:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.env["CRYPTOPIPE_KUBECTL"], f"--kubeconfig={self.env['KUBECONFIG']}", *args]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args[:3])}: {result.stderr}")
        return result

    def get(self, *args: str) -> Any:
        result = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def apply(self, obj: dict[str, Any], namespace: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=False)


def established(kube: Kube, crd: str) -> bool:
    conditions = (kube.get("crd", crd) or {}).get("status", {}).get("conditions", [])
    return any(x["type"] == "Established" and x["status"] == "True" for x in conditions)


def writes_settle(operator: Any) -> bool:
    before = operator.writes()
    time.sleep(3)
    return bool(operator.writes() == before)


class Operator:
    """The operator as a subprocess with the chart's ServiceAccount's kubeconfig."""

    def __init__(
        self,
        kubeconfig: Path,
        config: Path,
        release_ns: str,
        lease: str,
        log: Path,
        namespaces: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = {**os.environ, **(env or {})}
        self.argv = [
            sys.executable,
            "-m",
            "cryptopipe_operator",
            f"--kubeconfig={kubeconfig}",
            f"--config={config}",
            f"--operator-namespace={release_ns}",
            f"--lease-name={lease}",
            "--resync-seconds=2",
            "--log-level=INFO",
            *(f"--namespace={ns}" for ns in namespaces or []),
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.identity = ""

    def start(self, wait_leader: bool = True) -> None:
        self.port = free_port()
        handle = self.log.open("ab")
        self.identity = f"test-{uuid.uuid4().hex[:6]}"
        self.process = subprocess.Popen(
            [*self.argv, f"--metrics-port={self.port}", f"--identity={self.identity}"],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        if wait_leader:
            wait_for("leader", lambda: self.metric("cryptopipe_operator_leader") == 1.0, 60)
        else:
            wait_for("metrics", lambda: self.metric("cryptopipe_operator_leader") is not None, 60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def metrics(self) -> str:
        return self.fetch("/metrics")

    def fetch(self, path: str) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def metric(self, name: str) -> float | None:
        match = re.search(rf"^{re.escape(name)} (\S+)$", self.metrics(), re.MULTILINE)
        return float(match.group(1)) if match else None

    def writes(self) -> float:
        return self.metric("cryptopipe_operator_writes_total") or 0.0


@pytest.fixture(scope="module")
def kube(testbed: Any) -> Kube:
    k = Kube(testbed.ensure("kube"))
    for path in upstream_crds.crd_files():
        k.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    k.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(CHART / "crds" / "cryptopipelines.yaml"),
    )
    for crd in (
        "kafkas.kafka.strimzi.io",
        "kafkatopics.kafka.strimzi.io",
        "sparkapplications.sparkoperator.k8s.io",
        "cryptopipelines.cryptopipe.io",
    ):
        wait_for(
            f"CRD {crd} Established",
            functools.partial(established, k, crd),
        )
    return k


@contextlib.contextmanager
def installed_operator(
    kube: Kube,
    fullname: str,
    watch_namespaces: list[str] | None = None,
    platform: dict[str, Any] | None = None,
    operator_env: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """`helm install` the chart into a fresh namespace and run the operator as its
    ServiceAccount, with exactly the arguments the chart's Deployment would give it."""
    ns = f"cpo-e2e-{uuid.uuid4().hex[:6]}"
    home = Path(f"/tmp/cryptopipe-operator-e2e/{ns}")
    home.mkdir(parents=True)
    values: dict[str, Any] = {
        "fullnameOverride": fullname,
        "tolerations": [TOLERATION],
        "nodeSelector": SELECTOR,
        "operator": {"resyncSeconds": 2},
        "watchNamespaces": watch_namespaces or [],
        "platform": {
            "scheduling": {"tolerations": [TOLERATION], "nodeSelector": SELECTOR},
            "freshness": {"enabled": False},
            "networkPolicy": {"enabled": True, "platformCidrs": ["10.242.0.1/32"]},
            **(platform or {}),
        },
    }
    values_file = home / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    env = {
        **os.environ,
        "KUBECONFIG": kube.env["KUBECONFIG"],
        "HELM_CACHE_HOME": str(home / "c"),
        "HELM_CONFIG_HOME": str(home / "f"),
        "HELM_DATA_HOME": str(home / "d"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [
            kube.env["CRYPTOPIPE_HELM"],
            "install",
            "cpo",
            str(CHART),
            "-n",
            ns,
            "--create-namespace",
            "-f",
            str(values_file),
            "--wait",
            "--timeout=120s",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    helm_seconds = time.monotonic() - started
    config = home / "platform.yaml"
    cm = kube.get("configmap", fullname, "-n", ns)
    config.write_text(cm["data"]["platform.yaml"])
    kubeconfig = service_account_kubeconfig(ns, fullname, home / "sa-kubeconfig.yaml")
    operator = Operator(
        kubeconfig,
        config,
        ns,
        fullname,
        home / "operator.log",
        watch_namespaces or [],
        operator_env,
    )
    operator.start()
    try:
        yield {
            "ns": ns,
            "operator": operator,
            "helm_seconds": helm_seconds,
            "log": home / "operator.log",
            "kubeconfig": kubeconfig,
            "config": config,
            "fullname": fullname,
        }
    finally:
        operator.stop()
        subprocess.run(
            [kube.env["CRYPTOPIPE_HELM"], "uninstall", "cpo", "-n", ns],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def release(kube: Kube) -> Iterator[dict[str, Any]]:
    with installed_operator(kube, "cryptopipe-operator") as installed:
        yield installed


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    ns = f"cpo-pl-{uuid.uuid4().hex[:6]}"
    kube.kubectl("apply", "-f", "-", stdin=restricted_namespace(ns))
    yield ns
    kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return doc


def condition(kube: Kube, ns: str, name: str, kind: str) -> dict[str, Any]:
    cpl = kube.get("cpl", name, "-n", ns) or {}
    for cond in cpl.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def is_ready(kube: Kube, ns: str, name: str) -> bool:
    return condition(kube, ns, name, "Ready").get("status") == "True"


def set_kafka_ready(kube: Kube, ns: str, ready: bool) -> None:
    kafka = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "Kafka",
        "metadata": {"name": "cryptopipe"},
        "spec": {
            "kafka": {
                "listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}]
            }
        },
    }
    kube.apply(kafka, ns)
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    kube.kubectl(
        "patch",
        "kafka",
        "cryptopipe",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )


def children_of(kube: Kube, ns: str, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    kinds = "configmaps,services,deployments,jobs,cronjobs,ingresses,kafkatopics,sparkapplications"
    items = kube.get(kinds, "-n", ns, "-l", f"cryptopipe.io/pipeline={name}")["items"]
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in items
        if any(r.get("kind") == "CryptoPipeline" for r in o["metadata"].get("ownerReferences", []))
    }


def play_spark_and_trainer(kube: Kube, ns: str, name: str) -> None:
    play_spark(kube, ns, f"{name}-aggregator")
    play_trainer(kube, ns, name)


def play_spark(kube: Kube, ns: str, app: str) -> None:
    wait_for("SparkApplication", lambda: kube.get("sparkapplication", app, "-n", ns))
    kube.kubectl(
        "patch",
        "sparkapplication",
        app,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "applicationState": {"state": "RUNNING"},
                    "sparkApplicationId": "spark-1",
                    "driverInfo": {"podName": f"{app}-driver"},
                }
            }
        ),
    )


def play_trainer(kube: Kube, ns: str, name: str) -> None:
    def trainer_pod() -> Any:
        pods = kube.get(
            "pods",
            "-n",
            ns,
            "-l",
            f"cryptopipe.io/pipeline={name},app.kubernetes.io/component=trainer",
        )
        done = [p for p in pods["items"] if p["status"].get("phase") == "Succeeded"]
        return done[0] if done else None

    pod = wait_for("the training pod to succeed (kwok)", trainer_pod)
    result = {
        "version": "20260101T000000Z",
        "promoted": False,
        "reason": "does not beat persistence: walk-forward MASE 1.0300",
        "mase": 1.03,
    }
    statuses = pod["status"]["containerStatuses"]
    statuses[0]["state"] = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "message": json.dumps(result),
            "finishedAt": "2026-01-01T00:00:00Z",
            "startedAt": "2026-01-01T00:00:00Z",
        }
    }
    kube.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"containerStatuses": statuses}}),
    )


def test_pipeline_end_to_end(kube: Kube, release: dict[str, Any], namespace: str) -> None:
    ns, operator = namespace, release["operator"]
    # 1. No Kafka yet: DependenciesReady says so, no children are created.
    kafka_ns = release["ns"]
    kube.kubectl("delete", "kafka", "cryptopipe", "-n", kafka_ns, "--ignore-not-found")
    kube.apply(example("btcusdt"), ns)
    deps = wait_for(
        "DependenciesReady=False",
        lambda: (
            (c := condition(kube, ns, "btcusdt", "DependenciesReady")).get("status") == "False"
            and c
        ),
    )
    assert "Kafka cluster" in deps["message"] and "does not exist" in deps["message"]
    assert children_of(kube, ns, "btcusdt") == {}
    # 2. Strimzi says Kafka is ready: every child appears, owned by the pipeline.
    set_kafka_ready(kube, kafka_ns, True)
    kube.apply(example("ethusdt"), ns)
    started = time.monotonic()
    expected = {
        ("ConfigMap", "btcusdt-config"),
        ("Deployment", "btcusdt-producer"),
        ("Service", "btcusdt-producer-metrics"),
        ("SparkApplication", "btcusdt-aggregator"),
        ("CronJob", "btcusdt-retrain"),
        ("Deployment", "btcusdt-predictor"),
        ("Deployment", "btcusdt-dashboard"),
        ("Service", "btcusdt-dashboard"),
        ("Ingress", "btcusdt-dashboard"),
        ("KafkaTopic", "btcusdt-trades-btcusdt"),
        ("KafkaTopic", "btcusdt-candles-1m-btcusdt"),
        ("KafkaTopic", "btcusdt-forecasts-btcusdt"),
    }
    found = wait_for(
        "every child",
        lambda: (
            expected <= set(children_of(kube, ns, "btcusdt")) and children_of(kube, ns, "btcusdt")
        ),
    )
    print(f"children of btcusdt in {time.monotonic() - started:.1f}s")
    cpl = kube.get("cpl", "btcusdt", "-n", ns)
    for obj in found.values():
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "CryptoPipeline",
            "btcusdt",
            cpl["metadata"]["uid"],
            True,
        )
    assert any(k == "Job" and n.startswith("btcusdt-train-") for k, n in found)
    # 3. kwok runs the pods, the test plays spark-operator and the trainer: Ready.
    for name in ("btcusdt", "ethusdt"):
        play_spark_and_trainer(kube, ns, name)
    for name in ("btcusdt", "ethusdt"):
        try:
            wait_for(
                f"{name} Ready",
                functools.partial(is_ready, kube, ns, name),
                90,
            )
        except AssertionError:
            print(json.dumps(kube.get("cpl", name, "-n", ns).get("status"), indent=1))
            raise
    cpl = kube.get("cpl", "btcusdt", "-n", ns)
    conds = {c["type"]: c for c in cpl["status"]["conditions"]}
    assert cpl["status"]["phase"] == "Running"
    assert cpl["status"]["observedGeneration"] == cpl["metadata"]["generation"]
    assert (
        conds["ModelPromoted"]["status"] == "False"
        and conds["ModelPromoted"]["reason"] == "BelowBaseline"
    )
    assert conds["AggregatorRunning"]["reason"] == "Running"
    assert all(c["lastTransitionTime"] and c["observedGeneration"] for c in conds.values())
    table = kube.kubectl("get", "cpl", "-n", ns).stdout
    header, *rows = table.strip().splitlines()
    assert (
        header.split()[:5] == ["NAME", "SYMBOL", "READY", "PHASE", "MODEL"]
        and "LAST FORECAST" in header
    )
    assert rows[0].split()[:5] == ["btcusdt", "BTCUSDT", "True", "Running", "20260101T000000Z"]
    events = kube.get("events", "-n", ns, "--field-selector", "involvedObject.name=btcusdt")[
        "items"
    ]
    assert {"Created", "Running"} <= {e["reason"] for e in events}
    # 4. Steady state: no writes at all.
    time.sleep(3)
    before = operator.writes()
    time.sleep(8)
    assert operator.writes() == before, "the operator wrote at steady state"
    # 5. A child edited or deleted by hand comes back.
    kube.kubectl("scale", "deployment", "btcusdt-producer", "-n", ns, "--replicas=3")
    kube.kubectl("delete", "configmap", "btcusdt-config", "-n", ns)
    wait_for("the ConfigMap restored", lambda: kube.get("configmap", "btcusdt-config", "-n", ns))
    wait_for(
        "producer back at 1 replica",
        lambda: kube.get("deployment", "btcusdt-producer", "-n", ns)["spec"]["replicas"] == 1,
    )
    # 6. A spec change rolls only what it affects: the Sheets sink does not touch the producer.
    producer_hash = kube.get("deployment", "btcusdt-producer", "-n", ns)["spec"]["template"][
        "metadata"
    ]["annotations"]
    kube.kubectl(
        "patch",
        "cpl",
        "btcusdt",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "sinks": {
                        "sheets": {
                            "enabled": True,
                            "spreadsheetId": "s1",
                            "secretRef": {"name": "key"},
                        }
                    }
                }
            }
        ),
    )
    wait_for(
        "new generation observed",
        lambda: kube.get("cpl", "btcusdt", "-n", ns)["status"]["observedGeneration"] == 2,
    )
    assert (
        kube.get("deployment", "btcusdt-producer", "-n", ns)["spec"]["template"]["metadata"][
            "annotations"
        ]
        == producer_hash
    )
    # 7. Restart the operator: no duplicate child and no write.
    uids = {k: o["metadata"]["uid"] for k, o in children_of(kube, ns, "btcusdt").items()}
    wait_for("quiet", lambda: writes_settle(operator), 60)
    operator.stop()
    operator.start()
    time.sleep(8)
    assert operator.writes() == 0, "the restarted operator wrote"
    assert {k: o["metadata"]["uid"] for k, o in children_of(kube, ns, "btcusdt").items()} == uids
    # 8. Suspend: scaled to zero, the SparkApplication removed; resume brings it back.
    kube.kubectl(
        "patch", "cpl", "btcusdt", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    wait_for(
        "Suspended", lambda: kube.get("cpl", "btcusdt", "-n", ns)["status"]["phase"] == "Suspended"
    )
    wait_for(
        "SparkApplication removed",
        lambda: kube.get("sparkapplication", "btcusdt-aggregator", "-n", ns) is None,
    )
    assert kube.get("deployment", "btcusdt-producer", "-n", ns)["spec"]["replicas"] == 0
    kube.kubectl(
        "patch", "cpl", "btcusdt", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    wait_for(
        "SparkApplication back",
        lambda: kube.get("sparkapplication", "btcusdt-aggregator", "-n", ns),
    )
    # 9. Deleting the pipeline: the garbage collector removes its children.
    kube.kubectl("delete", "cpl", "btcusdt", "-n", ns)
    wait_for("children collected", lambda: children_of(kube, ns, "btcusdt") == {}, 120)
    assert kube.get("deployment", "ethusdt-producer", "-n", ns)


INVALID = [
    ({"symbol": "btc"}, "spec.symbol"),
    ({"symbol": "BTCUSDT", "intervals": ["1m", "1m"]}, "Duplicate value"),
    (
        {"symbol": "BTCUSDT", "intervals": ["1m"], "model": {"interval": "1h"}},
        "model.interval must be one of the aggregated intervals",
    ),
    (
        {"symbol": "BTCUSDT", "model": {"horizon": 60, "lookback": 48}},
        "model.horizon must be smaller than model.lookback",
    ),
    (
        {"symbol": "BTCUSDT", "sinks": {"sheets": {"enabled": True}}},
        "an enabled Sheets sink needs spreadsheetId and secretRef",
    ),
    ({"symbol": "BTCUSDT", "source": {"kind": "kraken"}}, "spec.source.kind"),
    ({"symbol": "BTCUSDT", "watermark": "soon"}, "spec.watermark"),
    ({"symbol": "BTCUSDT", "model": {"schedule": "daily"}}, "spec.model.schedule"),
    (
        {"symbol": "BTCUSDT", "resources": {"producer": {"cpu": "lots"}}},
        "spec.resources.producer.cpu",
    ),
    ({"symbol": "BTCUSDT", "sinks": {"kafka": {"partitions": 0}}}, "spec.sinks.kafka.partitions"),
    ({}, "spec.symbol: Required value"),
]


def test_invalid_pipelines_are_refused_with_clear_messages(
    kube: Kube, release: dict[str, Any], namespace: str
) -> None:
    for index, (spec, message) in enumerate(INVALID):
        doc = {
            "apiVersion": "cryptopipe.io/v1alpha1",
            "kind": "CryptoPipeline",
            "metadata": {"name": f"bad-{index}"},
            "spec": spec,
        }
        result = kube.apply(doc, namespace)
        assert result.returncode != 0, f"{spec} was accepted"
        assert message in result.stderr, f"{spec}: {result.stderr}"
    kube.apply(example("btcusdt"), namespace)
    refused = kube.kubectl(
        "patch",
        "cpl",
        "btcusdt",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"symbol":"ETHUSDT"}}',
        check=False,
    )
    assert refused.returncode != 0 and "symbol cannot change after creation" in refused.stderr
    # What the CRD cannot say: a second pipeline for the same symbol -> InvalidSpec.
    time.sleep(1.5)
    kube.apply(example("minimal"), namespace)
    ready = wait_for(
        "InvalidSpec",
        lambda: (
            (c := condition(kube, namespace, "minimal", "Ready")).get("reason") == "InvalidSpec"
            and c
        ),
    )
    assert "already handled by CryptoPipeline btcusdt" in ready["message"]
    assert kube.get("cpl", "minimal", "-n", namespace)["status"]["phase"] == "Invalid"
    assert kube.get("deployment", "minimal-producer", "-n", namespace) is None

    # Names: the longest one the CRD takes (63) gives children that all fit; one more is refused.
    longest = "long-name-" * 6 + "abc"
    too_long = {**example("ethusdt"), "metadata": {"name": longest + "d"}}
    result = kube.apply(too_long, namespace)
    assert result.returncode != 0 and "metadata.name must be at most 63 characters" in result.stderr
    capital = {**example("ethusdt"), "metadata": {"name": "9eth"}}
    result = kube.apply(capital, namespace)
    assert result.returncode != 0 and "metadata.name must start with a letter" in result.stderr
    kube.apply({**example("ethusdt"), "metadata": {"name": longest}}, namespace)
    made = wait_for(
        "the long-named pipeline's children",
        lambda: (
            (found := children_of(kube, namespace, longest))
            and {"SparkApplication", "CronJob", "Service"} <= {kind for kind, _ in found}
            and found
        ),
        120,
    )
    assert all(len(name) <= 52 for _, name in made), sorted(made)


def test_chart_rbac_is_least_privilege(kube: Kube, release: dict[str, Any]) -> None:
    sa = f"system:serviceaccount:{release['ns']}:cryptopipe-operator"

    def can(*args: str) -> bool:
        return (
            kube.kubectl("auth", "can-i", *args, f"--as={sa}", check=False).stdout.strip() == "yes"
        )

    assert can("patch", "deployments.apps", "-n", "default")
    assert can("patch", "cryptopipelines.cryptopipe.io", "--subresource=status", "-n", "default")
    assert not can("update", "cryptopipelines.cryptopipe.io", "-n", "default")
    assert not can("get", "secrets", "-n", "default")
    assert not can("delete", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can("get", "customresourcedefinitions.apiextensions.k8s.io/widgets.example.org")
    assert can(
        "get",
        "customresourcedefinitions.apiextensions.k8s.io/sparkapplications.sparkoperator.k8s.io",
    )
    assert not can("create", "pods", "-n", "default")
    assert can("update", "leases.coordination.k8s.io/cryptopipe-operator", "-n", release["ns"])
    assert not can("update", "leases.coordination.k8s.io/other", "-n", release["ns"])


def test_a_standby_replica_stays_idle_then_takes_over_from_a_killed_leader(
    kube: Kube, release: dict[str, Any], namespace: str
) -> None:
    leader: Operator = release["operator"]
    standby = Operator(
        release["kubeconfig"],
        release["config"],
        release["ns"],
        "cryptopipe-operator",
        release["log"].with_name("standby.log"),
    )
    standby.start(wait_leader=False)
    try:
        # While the leader holds the Lease the standby serves its probes and does nothing.
        set_kafka_ready(kube, release["ns"], True)
        kube.apply(example("btcusdt"), namespace)
        wait_for("the leader to reconcile", lambda: children_of(kube, namespace, "btcusdt"))
        assert standby.metric("cryptopipe_operator_leader") == 0.0
        assert standby.fetch("/readyz") == "ok\n" and standby.fetch("/healthz") == "ok\n"
        assert standby.writes() == 0.0
        # SIGKILL: no clean hand-over, the standby must wait for the Lease to expire.
        assert leader.process is not None
        leader.process.kill()
        leader.process.wait()
        killed = time.monotonic()
        kube.apply(example("ethusdt"), namespace)
        wait_for("the standby to lead", lambda: standby.metric("cryptopipe_operator_leader") == 1.0)
        wait_for("ethusdt reconciled", lambda: children_of(kube, namespace, "ethusdt"))
        takeover = time.monotonic() - killed
        print(f"standby took over and reconciled {takeover:.1f}s after the leader was killed")
        # Lease of 15 s, renewed every 5 s: expiry plus one retry round, with slack.
        assert takeover < 35
        lease = kube.get("lease", "cryptopipe-operator", "-n", release["ns"])
        assert lease["spec"]["holderIdentity"] == standby.identity
    finally:
        standby.stop()
        leader.start()


def test_an_operator_limited_to_some_namespaces_acts_there_only(
    kube: Kube, release: dict[str, Any]
) -> None:
    watched, other = (f"cpo-ns-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for ns in (watched, other):
        kube.kubectl("apply", "-f", "-", stdin=restricted_namespace(ns))
    release["operator"].stop()  # the module's cluster-wide operator would act everywhere
    try:
        with installed_operator(kube, "cpo-scoped", [watched]) as installed:
            sa = f"system:serviceaccount:{installed['ns']}:cpo-scoped"

            def can(*args: str) -> bool:
                answer = kube.kubectl("auth", "can-i", *args, f"--as={sa}", check=False)
                return answer.stdout.strip() == "yes"

            assert can("patch", "deployments.apps", "-n", watched)
            assert not can("patch", "deployments.apps", "-n", other)
            assert not can("list", "cryptopipelines.cryptopipe.io", "--all-namespaces")
            set_kafka_ready(kube, installed["ns"], True)
            kube.apply(example("btcusdt"), other)
            kube.apply(example("btcusdt"), watched)
            wait_for(
                "the watched pipeline's children", lambda: children_of(kube, watched, "btcusdt")
            )
            wait_for(
                "the watched pipeline's status",
                lambda: condition(kube, watched, "btcusdt", "DependenciesReady"),
            )
            time.sleep(4)  # two resync periods: the other namespace stays untouched
            assert children_of(kube, other, "btcusdt") == {}
            assert "status" not in kube.get("cpl", "btcusdt", "-n", other)
    finally:
        for ns in (watched, other):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        release["operator"].start()


def pool_member(name: str, symbol: str, **spec: Any) -> dict[str, Any]:
    manifest = example("btcusdt")
    manifest["metadata"]["name"] = name
    dashboard = {"enabled": False}
    manifest["spec"] = {**manifest["spec"], "symbol": symbol, "dashboard": dashboard, **spec}
    return manifest


def pool_children(kube: Kube, ns: str, pool: str) -> dict[tuple[str, str], dict[str, Any]]:
    kinds = "configmaps,services,deployments,sparkapplications"
    items = kube.get(kinds, "-n", ns, "-l", f"cryptopipe.io/pool={pool}")["items"]
    return {(o["kind"], o["metadata"]["name"]): o for o in items}


def owner_uids(obj: dict[str, Any]) -> set[str]:
    refs = obj["metadata"].get("ownerReferences", [])
    assert not any(ref.get("controller") for ref in refs), "a pool child has a controller"
    return {ref["uid"] for ref in refs}


def namespace_policies(kube: Kube, ns: str) -> dict[str, set[str]]:
    """The operator's NetworkPolicies in `ns`, each with the uids of its owners."""
    items = kube.get("networkpolicies", "-n", ns, "-l", "cryptopipe.io/scope=namespace")["items"]
    return {p["metadata"]["name"]: owner_uids(p) for p in items}


def test_a_pool_serves_its_pipelines_with_one_producer_and_one_aggregator(
    kube: Kube, release: dict[str, Any], namespace: str
) -> None:
    ns, operator = namespace, release["operator"]
    set_kafka_ready(kube, release["ns"], True)
    shared = {"isolation": "shared", "pool": "majors"}
    members = {"btc": "BTCUSDT", "eth": "ETHUSDT", "sol": "SOLUSDT"}
    for name, symbol in members.items():
        assert kube.apply(pool_member(name, symbol, **shared), ns).returncode == 0
    expected = {
        ("ConfigMap", "majors-members-pool"),
        ("Deployment", "majors-producer-pool"),
        ("Service", "majors-producer-metrics-pool"),
        ("SparkApplication", "majors-aggregator-pool"),
        ("Deployment", "majors-predictor-pool"),
        ("Service", "majors-predictor-metrics-pool"),
    }

    def uids() -> set[str]:
        return {kube.get("cpl", name, "-n", ns)["metadata"]["uid"] for name in members}

    found = wait_for(
        "the pool's children, owned by its three pipelines",
        lambda: (
            (c := pool_children(kube, ns, "majors"))
            and set(c) == expected
            and all(owner_uids(o) == uids() for o in c.values())
            and c
        ),
    )
    # The namespace's NetworkPolicies, written through the chart's RBAC, owned by every pipeline.
    policies = wait_for(
        "the namespace's NetworkPolicies, owned by the three pipelines",
        lambda: (p := namespace_policies(kube, ns)) and all(o == uids() for o in p.values()) and p,
    )
    assert "cryptopipe-default-deny" in policies and len(policies) == 8, sorted(policies)
    members_map = found[("ConfigMap", "majors-members-pool")]["data"]
    assert sorted(members_map) == ["btc.yaml", "eth.yaml", "sol.yaml"]
    assert "symbol: ETHUSDT" in members_map["eth.yaml"]
    producer = found[("Deployment", "majors-producer-pool")]["spec"]["template"]["spec"]
    args = producer["containers"][0]["args"]
    assert args[args.index("--transactional-id") + 1] == f"cryptopipe-producer.pool.{ns}.majors"
    app = found[("SparkApplication", "majors-aggregator-pool")]["spec"]
    assert "--spec-dir" in app["arguments"]
    # No pipeline has a producer, aggregator or predictor of its own; each keeps its topics
    # and its training.
    for name in members:
        own = {kind for kind, _ in children_of(kube, ns, name)}
        assert {"KafkaTopic", "CronJob"} <= own, own
        assert not own & {"SparkApplication", "Deployment"}, own

    # Every pipeline reads its aggregator's state from the pool's application.
    play_spark(kube, ns, "majors-aggregator-pool")
    for name in members:
        wait_for(
            f"{name}: AggregatorRunning from the pool's application",
            lambda name=name: (
                condition(kube, ns, name, "AggregatorRunning").get("reason")  # type: ignore[misc]
                == "Running"
            ),
        )

    # Training queues: every Job starts suspended and the pool admits it (two at a time by
    # default); kwok runs each admitted pod to completion.
    def trainings() -> list[dict[str, Any]]:
        selector = "app.kubernetes.io/component=trainer"
        jobs = kube.get("jobs", "-n", ns, "-l", selector)["items"]
        return [j for j in jobs if j["metadata"]["labels"]["cryptopipe.io/pipeline"] in members]

    def all_complete() -> bool:
        found = trainings()
        done = [
            j for j in found
            if any(c["type"] == "Complete" and c["status"] == "True"
                   for c in j.get("status", {}).get("conditions", []))
        ]  # fmt: skip
        return len(found) == len(members) and len(done) == len(found)

    wait_for("every training Job admitted and complete", all_complete, 120)
    for job in trainings():
        reasons = {c["type"]: c.get("reason") for c in job["status"]["conditions"]}
        assert reasons.get("Suspended") == "JobResumed", job["status"]["conditions"]
    admitted = kube.get("events", "-n", ns, "--field-selector", "reason=TrainingAdmitted")
    assert len(admitted["items"]) >= len(members)

    # A pipeline whose sinks differ cannot share the pool: it says so, the others go on.
    odd = pool_member("ada", "ADAUSDT", sinks={"hdfs": {"path": "/elsewhere"}}, **shared)
    kube.apply(odd, ns)
    message = wait_for(
        "ada refused from the pool",
        lambda: (
            condition(kube, ns, "ada", "Ready").get("message", "")
            if "differ" in condition(kube, ns, "ada", "Ready").get("message", "")
            else None
        ),
    )
    assert "pool majors" in message and "spec.sinks" in message, message
    cm = kube.get("configmap", "majors-members-pool", "-n", ns)
    assert sorted(cm["data"]) == ["btc.yaml", "eth.yaml", "sol.yaml"]
    kube.kubectl("delete", "cpl", "ada", "-n", ns)

    # Steady state: no writes, though three pipelines reconcile the same shared children.
    wait_for("writes to settle", lambda: writes_settle(operator), 60)
    before = operator.writes()
    time.sleep(6)
    assert operator.writes() == before, "the pool's members wrote at steady state"

    # One leaves: the pool goes on without it (members, owners), at once.
    kube.kubectl("delete", "cpl", "sol", "-n", ns)
    wait_for(
        "the pool without sol",
        lambda: (
            sorted(kube.get("configmap", "majors-members-pool", "-n", ns)["data"])
            == ["btc.yaml", "eth.yaml"]
        ),
        30,
    )
    remaining = {kube.get("cpl", name, "-n", ns)["metadata"]["uid"] for name in ("btc", "eth")}
    wait_for(
        "sol's ownership gone",
        lambda: all(owner_uids(o) == remaining for o in pool_children(kube, ns, "majors").values()),
        30,
    )
    # One moves to dedicated: it gets its own producer, and leaves the pool.
    kube.kubectl(
        "patch", "cpl", "eth", "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {"isolation": "dedicated"}}),
    )  # fmt: skip
    wait_for("eth's own producer", lambda: kube.get("deployment", "eth-producer", "-n", ns))
    wait_for(
        "the pool without eth",
        lambda: (
            sorted(kube.get("configmap", "majors-members-pool", "-n", ns)["data"]) == ["btc.yaml"]
        ),
        30,
    )
    wait_for(
        "the NetworkPolicies owned by btc and eth only",
        lambda: all(o == remaining for o in namespace_policies(kube, ns).values()),
        30,
    )
    # The last one goes: garbage collection takes the pool's children.
    kube.kubectl("delete", "cpl", "btc", "-n", ns)
    wait_for("the pool's children gone", lambda: not pool_children(kube, ns, "majors"), 90)
    # The namespace's policies stay for eth, then go with the namespace's last pipeline.
    eth = kube.get("cpl", "eth", "-n", ns)["metadata"]["uid"]
    wait_for(
        "the NetworkPolicies owned by eth",
        lambda: all(o == {eth} for o in namespace_policies(kube, ns).values()),
        30,
    )
    kube.kubectl("delete", "cpl", "eth", "-n", ns)
    wait_for("the NetworkPolicies gone", lambda: not namespace_policies(kube, ns), 90)


def secret_values(kube: Kube, ns: str, name: str) -> dict[str, str]:
    found = kube.get("secret", name, "-n", ns)
    if not found:
        return {}
    return {key: base64.b64decode(value).decode() for key, value in found["data"].items()}


def acl_topics(root: KafkaAdminClient, user: str) -> set[str]:
    """The topics `user` holds an ACL on, as the broker answers (asked as its super user)."""
    topics_only = ResourcePatternFilter(ResourceType.TOPIC, None, ACLResourcePatternType.ANY)
    found, _ = root.describe_acls(
        ACLFilter(f"User:{user}", None, ACLOperation.ANY, ACLPermissionType.ANY, topics_only)
    )
    return {acl.resource_pattern.resource_name for acl in found}


def test_each_component_connects_to_kafka_as_its_own_user(
    kube: Kube, release: dict[str, Any], testbed: Any
) -> None:
    """kafka.manageUsers on the test bed's SCRAM listener: the operator, as the platform's
    Kafka admin, makes one user per component with its ACLs, and writes each a Secret its
    pods read; Kafka itself then allows each user its own topics and nothing else, and takes
    back a symbol's ACLs when it leaves its pool."""
    brokers = testbed.ensure("kafka")
    admin_user, admin_password = scram_admin()
    root = KafkaAdminClient(bootstrap_servers=brokers["CRYPTOPIPE_KAFKA_BOOTSTRAP"])
    scram = brokers["CRYPTOPIPE_KAFKA_SCRAM_BOOTSTRAP"]
    platform = {
        "kafka": {
            "mode": "external",
            "bootstrapServers": scram,
            "securityProtocol": "SASL_PLAINTEXT",
            "saslMechanism": "SCRAM-SHA-512",
            "authSecret": "kafka-client",
            "manageUsers": True,
            "adminSecret": "kafka-admin",
        }
    }
    admin_env = {
        "CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CRYPTOPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRYPTOPIPE_KAFKA_USERNAME": admin_user,
        "CRYPTOPIPE_KAFKA_PASSWORD": admin_password,
        "CRYPTOPIPE_KAFKA_USER_KEY": secrets.token_urlsafe(24),
    }
    ns = f"cpo-users-{uuid.uuid4().hex[:6]}"
    solo, first, second = (f"U{uuid.uuid4().hex[:6].upper()}USDT" for _ in range(3))
    kube.kubectl("apply", "-f", "-", stdin=restricted_namespace(ns))
    release["operator"].stop()  # the module's cluster-wide operator would act here too
    try:
        fullname = f"cpo-users-{uuid.uuid4().hex[:6]}"  # its ClusterRoles are named after it
        with installed_operator(kube, fullname, [ns], platform, admin_env) as installed:
            sa = f"system:serviceaccount:{installed['ns']}:{fullname}"

            def can(*args: str) -> bool:
                answer = kube.kubectl("auth", "can-i", *args, f"--as={sa}", check=False)
                return answer.stdout.strip() == "yes"

            # It writes Secrets and may never read one.
            assert can("create", "secrets", "-n", ns) and can("patch", "secrets", "-n", ns)
            assert not can("get", "secrets", "-n", ns) and not can("list", "secrets", "-n", ns)
            kube.apply(pool_member("solo", solo), ns)
            shared = {"isolation": "shared", "pool": "team"}
            kube.apply(pool_member("first", first, **shared), ns)
            kube.apply(pool_member("second", second, **shared), ns)
            roles = ("producer", "aggregator", "predictor", "dashboard")
            wait_for(
                "every component's Secret",
                lambda: (
                    all(secret_values(kube, ns, f"solo-kafka-{r}") for r in roles)
                    and all(secret_values(kube, ns, f"team-kafka-{r}-pool") for r in roles)
                ),
                60,
            )
            producer = secret_values(kube, ns, "solo-kafka-producer")
            assert producer["username"] == f"cryptopipe.{ns}.solo.producer"
            deployment = kube.get("deployment", "solo-producer", "-n", ns)
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            refs = {
                e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                for e in container["env"]
                if "valueFrom" in e
            }
            assert refs["CRYPTOPIPE_KAFKA_USERNAME"] == "solo-kafka-producer"
            assert refs["CRYPTOPIPE_KAFKA_PASSWORD"] == "solo-kafka-producer"
            args = container["args"]
            assert args[args.index("--transactional-id") + 1] == f"cryptopipe-producer.{ns}.solo"

            # Kafka itself: the producer's user creates and writes its trades topic only.
            def as_user(values: dict[str, str]) -> dict[str, Any]:
                return {
                    "bootstrap_servers": scram,
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": values["username"],
                    "sasl_plain_password": values["password"],
                }

            own = topics.trades(solo)
            producer_admin = KafkaAdminClient(**as_user(producer))
            try:
                producer_admin.create_topics([NewTopic(own, 1, 1)])
                with pytest.raises(TopicAuthorizationFailedError):
                    producer_admin.create_topics([NewTopic(topics.trades(first), 1, 1)])
            finally:
                producer_admin.close()
            writer = KafkaProducer(**as_user(producer))
            try:
                writer.send(own, b"a trade").get(30)
                with pytest.raises(TopicAuthorizationFailedError):
                    writer.send(topics.candles("1m", solo), b"not mine").get(30)
            finally:
                writer.close()
            # The dashboard's user reads that topic and may not write it.
            dashboard = secret_values(kube, ns, "solo-kafka-dashboard")
            reader = KafkaConsumer(**as_user(dashboard), consumer_timeout_ms=10_000)
            try:
                reader.assign([TopicPartition(own, 0)])
                reader.seek_to_beginning()
                assert [record.value for record in reader] == [b"a trade"]
            finally:
                reader.close()
            # Not idempotent: a user with no WRITE anywhere is refused a producer id before any
            # topic is asked for; this way Kafka answers for the topic itself.
            intruder = KafkaProducer(**as_user(dashboard), enable_idempotence=False)
            try:
                with pytest.raises(TopicAuthorizationFailedError):
                    intruder.send(own, b"forged").get(30)
            finally:
                intruder.close()

            # The pool's producer user holds both members' trades; one leaves, its ACLs go.
            pool_user = secret_values(kube, ns, "team-kafka-producer-pool")["username"]
            assert pool_user == f"cryptopipe.{ns}.pool-team.producer"
            both = {topics.trades(first), topics.trades(second), topics.deadletter("binance")}
            wait_for("the pool user's ACLs", lambda: acl_topics(root, pool_user) == both, 30)
            kube.kubectl("delete", "cpl", "second", "-n", ns)
            wait_for(
                "second's ACLs revoked",
                lambda: acl_topics(root, pool_user) == both - {topics.trades(second)},
                60,
            )
            wait_for("writes to settle", lambda: writes_settle(installed["operator"]), 60)

            # Gone pipelines and pools lose their users and ACLs; a user of a namespace this
            # operator does not watch stays, however it is named.
            foreign = f"cryptopipe.{ns}-elsewhere.gone.producer"
            root.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(foreign, ScramMechanism.SCRAM_SHA_512, "x" * 16)]
            )

            def users(owner: str) -> set[str]:
                prefix = f"cryptopipe.{ns}.{owner}."
                return {u for u in root.describe_user_scram_credentials() if u.startswith(prefix)}

            assert len(users("solo")) == 4 and len(users("pool-team")) == 4
            kube.kubectl("delete", "cpl", "solo", "-n", ns)
            wait_for("solo's users deleted", lambda: not users("solo"), 60)
            assert len(users("pool-team")) == 4  # "first" still shares the pool
            kube.kubectl("delete", "cpl", "first", "-n", ns)
            wait_for("the pool's users deleted", lambda: not users("pool-team"), 60)
            assert not acl_topics(root, pool_user)
            assert foreign in root.describe_user_scram_credentials()
            root.alter_user_scram_credentials(
                [UserScramCredentialDeletion(foreign, ScramMechanism.SCRAM_SHA_512)]
            )
    finally:
        root.close()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        release["operator"].start()
