"""The test bed's Kubernetes is a real control plane: API server, controllers, scheduler, kwok."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_testbed.components.kube import (
    FAKE_NODE,
    FAKE_NODE_LABEL,
    FAKE_NODE_TAINT,
    service_account_kubeconfig,
    wait_established,
)

pytestmark = pytest.mark.integration

TOLERATE_FAKE_NODE = {
    "tolerations": [
        {
            "key": FAKE_NODE_TAINT[0],
            "operator": "Equal",
            "value": FAKE_NODE_TAINT[1],
            "effect": FAKE_NODE_TAINT[2],
        }
    ],
    "nodeSelector": {FAKE_NODE_LABEL[0]: FAKE_NODE_LABEL[1]},
}
CONTAINERS = [{"name": "main", "image": "registry.invalid/none:1"}]


class Kube:
    """kubectl and helm against the test bed, as admin or with another kubeconfig."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        config = str(kubeconfig) if kubeconfig else self.env["KUBECONFIG"]
        return self._run(
            [self.env["CRYPTOPIPE_KUBECTL"], f"--kubeconfig={config}", *args],
            stdin=stdin,
            check=check,
        )

    def helm(self, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
        helm_env = {
            **os.environ,
            "KUBECONFIG": self.env["KUBECONFIG"],
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        return self._run([self.env["CRYPTOPIPE_HELM"], *args], env=helm_env)

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        ns = [f"--namespace={namespace}"] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", stdin=document)

    def get(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return result

    @staticmethod
    def _run(
        argv: list[str],
        *,
        stdin: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=120, env=env, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:4])}... failed: {result.stderr}")
        return result


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def kube(testbed: Any) -> Kube:
    return Kube(testbed.ensure("kube"))


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_server_reports_its_version(kube: Kube) -> None:
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.34.12"
    assert version["clientVersion"]["gitVersion"] == "v1.34.12"


def test_custom_resource_round_trips_and_is_validated(kube: Kube, namespace: str) -> None:
    group = f"{namespace}.testbed.cryptopipe.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kube.apply(crd)
    try:
        wait_established([f"crd/widgets.{group}"], timeout=30)
        widget = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        kube.apply(widget, namespace=namespace)
        stored = kube.get(f"widgets.{group}", "w1", f"--namespace={namespace}")
        assert stored["spec"] == {"size": 3}
        invalid = {**widget, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        rejected = kube.kubectl(
            "apply", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(invalid), check=False
        )
        assert rejected.returncode != 0
        assert "spec.size" in rejected.stderr
    finally:
        kube.kubectl("delete", f"crd/widgets.{group}", "--wait=false", check=False)


def test_deployment_pods_run_on_the_fake_node(kube: Kube, namespace: str) -> None:
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {**TOLERATE_FAKE_NODE, "containers": CONTAINERS},
            },
        },
    }
    kube.apply(deployment, namespace=namespace)

    def pods_running() -> bool:
        pods = kube.get("pods", "-l", "app=web", f"--namespace={namespace}")["items"]
        return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)

    wait_for(pods_running, "two Running pods of the Deployment")
    pods = kube.get("pods", "-l", "app=web", f"--namespace={namespace}")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {FAKE_NODE}
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet"
    replica_set = kube.get("replicaset", owner["name"], f"--namespace={namespace}")
    assert replica_set["metadata"]["ownerReferences"][0]["name"] == "web"
    wait_for(
        lambda: (
            kube.get("deployment", "web", f"--namespace={namespace}")["status"].get(
                "availableReplicas"
            )
            == 2
        ),
        "the Deployment to report 2 available replicas",
    )


def test_pod_without_toleration_stays_off_the_fake_node(kube: Kube, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain"},
        # It asks for the fake node but lacks the toleration (the real node would take it).
        "spec": {"nodeSelector": dict([FAKE_NODE_LABEL]), "containers": CONTAINERS},
    }
    kube.apply(pod, namespace=namespace)

    def unschedulable() -> bool:
        status = kube.get("pod", "plain", f"--namespace={namespace}")["status"]
        return any(c.get("reason") == "Unschedulable" for c in status.get("conditions", []))

    wait_for(unschedulable, "the scheduler to mark the pod Unschedulable")
    assert "nodeName" not in kube.get("pod", "plain", f"--namespace={namespace}")["spec"]


def test_job_succeeds(kube: Kube, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {**TOLERATE_FAKE_NODE, "restartPolicy": "Never", "containers": CONTAINERS}
            },
        },
    }
    kube.apply(job, namespace=namespace)

    def complete() -> bool:
        status = kube.get("job", "once", f"--namespace={namespace}")["status"]
        return any(
            c["type"] == "Complete" and c["status"] == "True" for c in status.get("conditions", [])
        )

    wait_for(complete, "the Job to complete", timeout=90)
    status = kube.get("job", "once", f"--namespace={namespace}")["status"]
    assert status["succeeded"] == 1
    assert status.get("failed", 0) == 0


def _write_chart(root: Path) -> Path:
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
        "  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    return chart


def test_helm_install_and_uninstall(kube: Kube, namespace: str, tmp_path: Path) -> None:
    chart = _write_chart(tmp_path)
    offline = kube.helm("template", "rel", str(chart), home=tmp_path).stdout
    assert 'kubeVersion: "v1.34.0"' in offline  # helm's built-in default, set at build time

    kube.helm(
        "install",
        "rel",
        str(chart),
        f"--namespace={namespace}",
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout=60s",
        home=tmp_path,
    )
    config = kube.get("configmap", "rel-config", f"--namespace={namespace}")
    assert config["data"] == {"greeting": "hi", "kubeVersion": "v1.34.12"}
    releases = json.loads(
        kube.helm("list", f"--namespace={namespace}", "-o", "json", home=tmp_path).stdout
    )
    assert [(r["name"], r["status"]) for r in releases] == [("rel", "deployed")]

    kube.helm("uninstall", "rel", f"--namespace={namespace}", "--wait", home=tmp_path)
    gone = kube.kubectl("get", "configmap", "rel-config", f"--namespace={namespace}", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_service_account_has_exactly_its_role(kube: Kube, namespace: str, tmp_path: Path) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "read-configmaps",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"k": "v"},
    }
    kube.apply(account, role, binding, config, namespace=namespace)
    token_config = service_account_kubeconfig(namespace, "reader", tmp_path / "reader.yaml")

    whoami = json.loads(
        kube.kubectl("auth", "whoami", "-o", "json", kubeconfig=token_config).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"
    got = kube.kubectl(
        "get", "configmap", "settings", "-o", "jsonpath={.data.k}", kubeconfig=token_config
    )
    assert got.stdout == "v"
    for denied in (["delete", "configmap", "settings"], ["get", "secrets"], ["get", "configmaps"]):
        result = kube.kubectl(*denied, kubeconfig=token_config, check=False)
        assert result.returncode != 0, denied
        assert "Forbidden" in result.stderr, result.stderr
    assert kube.kubectl("get", "configmap", "settings", f"--namespace={namespace}").returncode == 0


def test_garbage_collector_deletes_owned_objects(kube: Kube, namespace: str) -> None:
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}
    kube.apply(owner, namespace=namespace)
    uid = kube.get("configmap", "owner", f"--namespace={namespace}")["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kube.apply(child, namespace=namespace)
    kube.kubectl("delete", "configmap", "owner", f"--namespace={namespace}")

    def child_gone() -> bool:
        result = kube.kubectl("get", "configmap", "child", f"--namespace={namespace}", check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    wait_for(child_gone, "the garbage collector to delete the owned ConfigMap")
