"""The Kubeflow spark-operator's real controller runs a PySpark SparkApplication on the real node.

The controller (test bed component `sparkop`) runs spark-submit, which creates the driver pod
from our spark image; the driver, as the platform chart's `cryptopipe-spark` ServiceAccount
(its RBAC rendered from charts/cryptopipe-platform), creates one executor pod from the same
image. The program comes from a ConfigMap mounted through the pod templates (the webhook that
would mount plain `volumes` does not run). The sum it prints is computed in the executor and is
checked against the same sum computed here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_testbed import kube_build, node_load, process, versions
from cryptopipe_testbed.components import images, kube, node, spark_operator
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_CHART = ROOT / "charts" / "cryptopipe-platform"
APP = "sumsq"
NUMBERS = 20_000
PARTITIONS = 4
PROGRAM = f"""\
import socket

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("{APP}").getOrCreate()
numbers = spark.sparkContext.parallelize(range(1, {NUMBERS} + 1), {PARTITIONS})
total = numbers.map(lambda n: n * n).sum()
hosts = sorted(set(numbers.mapPartitions(lambda _: [socket.gethostname()]).collect()))
print(f"RESULT sum_of_squares={{total}} computed_on={{','.join(hosts)}}", flush=True)
spark.stop()
"""
JOB_MOUNT = "/opt/job"
# Whole-core Spark sizes, small requests: two pods must fit the node's 2 CPUs beside CoreDNS.
ROLE = {"cores": 1, "coreRequest": "250m", "memory": "512m"}


def kubectl(*args: str, stdin: str | None = None) -> str:
    result = kube.kubectl(*args, stdin=stdin, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def get(*args: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json"))
    return parsed


def wait_for(
    check: Callable[[], bool], what: str, timeout: float, diagnose: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diagnose()}")


def pod_template(container: str) -> dict[str, Any]:
    """What the webhook would patch in: the program's volume, mounted in Spark's container."""
    return {
        "spec": {
            "volumes": [{"name": "job", "configMap": {"name": f"{APP}-program"}}],
            "containers": [
                {
                    "name": container,
                    "volumeMounts": [{"name": "job", "mountPath": JOB_MOUNT, "readOnly": True}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        }
    }


def spark_application(image: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": APP},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": image,
            "imagePullPolicy": "Never",
            "mainApplicationFile": f"local://{JOB_MOUNT}/job.py",
            "sparkVersion": versions.SPARK,
            "restartPolicy": {"type": "Never"},
            "nodeSelector": {node.NODE_LABEL[0]: node.NODE_LABEL[1]},
            "sparkConf": {
                # Kept after the run, so the test sees where the executor ran.
                "spark.kubernetes.executor.deleteOnTermination": "false",
                "spark.ui.enabled": "false",
            },
            "driver": {
                **ROLE,
                "serviceAccount": service_account,
                "template": pod_template("spark-kubernetes-driver"),
            },
            "executor": {
                **ROLE,
                "instances": 1,
                "template": pod_template("spark-kubernetes-executor"),
            },
        },
    }


def chart_spark_rbac(namespace: str) -> list[dict[str, Any]]:
    """The platform chart's ServiceAccount, Role and RoleBinding for drivers, for `namespace`."""
    helm = kube_build.helm_bin() / "helm"
    rendered = subprocess.run(
        [
            str(helm), "template", "sparkop-test", str(PLATFORM_CHART),
            f"--namespace={namespace}", "--show-only=templates/spark-rbac.yaml",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module")
def spark_image(testbed: TestbedSession) -> str:
    testbed.ensure("kube", "node", "images", "sparkop")
    images.build(["spark"])  # layer-cache hits unless the sources changed
    imported = node_load.load(["spark"])
    print(f"spark image imported into containerd: {imported} (0.0: already there)")
    return images.reference("spark")


@pytest.fixture
def namespace(spark_image: str) -> Iterator[str]:
    name = f"sparkop-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "=".join(spark_operator.NAMESPACE_LABEL))
    yield name
    submission = ""
    found = kube.kubectl("get", "sparkapplication", APP, f"--namespace={name}", "-o", "json")
    if found.returncode == 0:
        submission = json.loads(found.stdout).get("status", {}).get("submissionID", "")
    kube.kubectl("delete", "namespace", name, "--wait=false")
    if submission:  # the pod template files the controller wrote for spark-submit
        shutil.rmtree(Path("/tmp/spark") / submission, ignore_errors=True)


def test_real_controller_runs_a_pyspark_application_on_the_real_node(
    spark_image: str, namespace: str
) -> None:
    began = time.monotonic()
    rbac = chart_spark_rbac(namespace)
    (account,) = [doc["metadata"]["name"] for doc in rbac if doc["kind"] == "ServiceAccount"]
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{APP}-program"},
        "data": {"job.py": PROGRAM},
    }
    objects = [*rbac, config_map, spark_application(spark_image, account)]
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl("apply", f"--namespace={namespace}", "-f", "-", stdin=document)

    def state() -> str:
        app = get("sparkapplication", APP, f"--namespace={namespace}")
        return str(app.get("status", {}).get("applicationState", {}).get("state", ""))

    def diagnose() -> str:
        pods = kube.kubectl("get", "pods", "-o", "wide", f"--namespace={namespace}").stdout
        app = kube.kubectl("get", "sparkapplication", APP, "-o", "yaml", f"--namespace={namespace}")
        driver = kube.kubectl("logs", f"{APP}-driver", "--tail=60", f"--namespace={namespace}")
        return (
            f"pods:\n{pods}\napplication:\n{app.stdout}\ndriver log:\n{driver.stdout}"
            f"\ncontroller log:\n{process.log_tail(spark_operator.DAEMON, 30)}"
        )

    wait_for(
        lambda: state() in {"COMPLETED", "FAILED", "SUBMISSION_FAILED"},
        "the application to finish",
        timeout=240,
        diagnose=diagnose,
    )
    assert state() == "COMPLETED", diagnose()
    status = get("sparkapplication", APP, f"--namespace={namespace}")["status"]
    driver_pod = status["driverInfo"]["podName"]
    executors = sorted(status.get("executorState", {}))
    assert len(executors) == 1, status
    assert status["executorState"][executors[0]] == "COMPLETED", status

    pods = {
        pod["metadata"]["name"]: pod for pod in get("pods", f"--namespace={namespace}")["items"]
    }
    for name in (driver_pod, *executors):
        assert pods[name]["spec"]["nodeName"] == node.NODE_NAME, name
        assert pods[name]["spec"]["containers"][0]["image"] == spark_image
    # What the controller judged by (the pod's phase may follow a moment later).
    (driver_container,) = pods[driver_pod]["status"]["containerStatuses"]
    assert driver_container["state"]["terminated"]["exitCode"] == 0
    assert pods[driver_pod]["spec"]["serviceAccountName"] == account

    log = kubectl("logs", driver_pod, f"--namespace={namespace}")
    found = re.search(r"^RESULT sum_of_squares=(\d+) computed_on=(\S+)$", log, re.MULTILINE)
    assert found, log[-4000:]
    assert int(found.group(1)) == sum(n * n for n in range(1, NUMBERS + 1))
    # The partitions ran in the executor pod (its hostname is its pod name), not in the driver.
    assert found.group(2).split(",") == executors
    print(f"SparkApplication {APP} COMPLETED in {time.monotonic() - began:.0f}s")
