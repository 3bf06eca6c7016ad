"""The platform chart (charts/cryptopipe-platform) installed in real pods on the test bed's node.

Values for the node (external Kafka through the node's SCRAM pod listener, local-path volumes, our
images and the PostgreSQL stand-in from containerd, small requests), the release's pods, and
WebHDFS calls from this machine, which routes the pods' addresses to the node's pod bridge.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kafka_support import scram_admin
from node_support import get, helm, is_ready, kubectl, wait_for

from cryptopipe_testbed import node_images, node_load
from cryptopipe_testbed.components import images, node

CHART = Path(__file__).resolve().parents[1] / "charts" / "cryptopipe-platform"
RELEASE = "cpp"
PREFIX = "cryptopipe"  # the chart's platformName
OUR_IMAGES = ("hadoop", "hive-metastore", "producer")
COMPONENTS = ("hdfs-namenode", "hdfs-datanode", "hive-metastore", "postgres")
SECRET = f"{PREFIX}-hive-metastore-db"
KAFKA_SECRET = "kafka-client"  # the broker's SCRAM user for the helm test's Kafka round trip
KEPT_CLAIMS = {
    f"name-{PREFIX}-hdfs-namenode-0",
    f"data-{PREFIX}-hdfs-datanode-0",
    f"data-{PREFIX}-postgres-0",
}
WEBHDFS_PORT = 9870
THRIFT_PORT = 9083
JVM = {"requests": {"cpu": "20m", "memory": "192Mi"}, "limits": {"memory": "640Mi"}}
SMALL = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def values(env: dict[str, str]) -> dict[str, Any]:
    return {
        "image": {
            "registry": images.registry(),
            "tag": images.project_version(),
            "pullPolicy": "Never",
        },
        "scheduling": {"nodeSelector": {node.NODE_LABEL[0]: node.NODE_LABEL[1]}},
        "persistence": {"storageClass": env["CRYPTOPIPE_NODE_STORAGE_CLASS"]},
        "kafka": {
            "provider": "external",
            "external": {
                "bootstrapServers": env["CRYPTOPIPE_KAFKA_POD_SCRAM_BOOTSTRAP"],
                "securityProtocol": "SASL_PLAINTEXT",
                "saslMechanism": "SCRAM-SHA-512",
                "authSecret": KAFKA_SECRET,
            },
        },
        "hdfs": {
            "namenode": {"storage": "1Gi", "heap": "256m", "resources": JVM},
            "datanode": {"storage": "1Gi", "heap": "256m", "resources": JVM},
        },
        "hiveMetastore": {"heap": "256m", "resources": JVM},
        "postgres": {
            "image": {
                "repository": node_images.POSTGRES.reference.rsplit(":", 1)[0],
                "tag": node_images.POSTGRES.tag,
                "pullPolicy": "Never",
            },
            "storage": "1Gi",
            "resources": SMALL,
        },
        "tests": {"resources": SMALL},
    }


@dataclass(frozen=True)
class Platform:
    namespace: str
    home: Path
    values_file: Path
    ready_seconds: float
    release: str = RELEASE

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return helm(self.home, self.namespace, *args, timeout=timeout)

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The component's pods that are not on their way out."""
        selector = f"app.kubernetes.io/instance={self.release}"
        selector += f",app.kubernetes.io/component={component}"
        listed = get("pods", f"--namespace={self.namespace}", "-l", selector)
        return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]

    def ready_pod(self, component: str) -> dict[str, Any] | None:
        pods = self.pods(component)
        return pods[0] if len(pods) == 1 and is_ready(pods[0]) else None

    def ip(self, component: str) -> str:
        pod = wait_for(f"{component} Ready", lambda: self.ready_pod(component))
        return str(pod["status"]["podIP"])

    def secret_password(self) -> bytes:
        secret = get("secret", SECRET, f"--namespace={self.namespace}")
        return base64.b64decode(secret["data"]["password"])


def all_ready(platform: Platform) -> dict[str, dict[str, Any]]:
    found = {component: platform.ready_pod(component) for component in COMPONENTS}
    return {c: pod for c, pod in found.items() if pod} if all(found.values()) else {}


def delete_claims_and_volumes(namespace: str) -> None:
    """The claims (kept on purpose) and the volumes local-path provisioned for them: the
    provisioner deletes a released volume and its folder on the node (reclaim policy Delete)."""
    kubectl("delete", "pvc", "--all", f"--namespace={namespace}", "--wait=false", check=False)

    def volumes() -> list[str]:
        listed = get("pv") or {"items": []}
        return [
            v["metadata"]["name"]
            for v in listed["items"]
            if v["spec"].get("claimRef", {}).get("namespace") == namespace
        ]

    try:
        wait_for("local-path to delete the volumes", lambda: not volumes(), 90)
    except AssertionError:
        left = volumes()
        if left:
            kubectl("delete", "pv", *left, "--wait=false", check=False)
        raise


def pod_address(namespace: str, host: str) -> str:
    """A pod's address for its cluster DNS name (<pod>.<service>.<namespace>.svc...), which
    only cluster DNS resolves; any other host as it is."""
    labels = host.split(".")
    if len(labels) < 4 or labels[2] != namespace or labels[3] != "svc":
        return host
    pod = get("pod", labels[0], f"--namespace={namespace}")
    return str(pod["status"]["podIP"])


Resolve = Callable[[str, int], tuple[str, int]]


def webhdfs(
    namespace: str,
    host: str,
    method: str,
    path: str,
    op: str,
    body: bytes | None = None,
    resolve: Resolve | None = None,
) -> tuple[int, bytes]:
    """One WebHDFS call to the NameNode at `host`; a redirect to a DataNode is followed.
    `resolve` maps a (host, port) the NameNode names to where this machine reaches it (a
    port-forward); by default a pod's DNS name to its address, which this machine routes."""
    query = urllib.parse.urlencode({"op": op, "user.name": "cryptopipe-test", "overwrite": "false"})
    url = f"http://{host}:{WEBHDFS_PORT}/webhdfs/v1{path}?{query}"
    for _ in range(2):
        parts = urllib.parse.urlsplit(url)
        if resolve is None:
            address, port = pod_address(namespace, str(parts.hostname)), parts.port
        else:
            address, port = resolve(str(parts.hostname), int(parts.port or WEBHDFS_PORT))
        connection = http.client.HTTPConnection(address, port, timeout=30)
        connection.request(method, f"{parts.path}?{parts.query}", body=body)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 307:
            return answer.status, data
        url = str(answer.getheader("Location"))
    raise AssertionError(f"{op} {path}: redirected twice")


def load_images(extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Our platform images (and `extra` ones) and the PostgreSQL stand-in in the node's
    containerd; seconds per import (0.0: already there)."""
    names = tuple(dict.fromkeys((*OUR_IMAGES, *extra)))
    images.build(list(names))  # layer-cache hits unless the sources changed
    imported = node_load.load(names)
    where = node.layout()
    began = time.monotonic()
    if node_images.ensure(node_images.POSTGRES, where.containerd_socket, where.images):
        imported["postgres"] = time.monotonic() - began
    return imported


@contextlib.contextmanager
def installed(
    env: dict[str, str], home: Path, namespace: str, overrides: dict[str, Any] | None = None
) -> Iterator[Platform]:
    """`helm install` into an existing namespace, every pod Ready; on exit `helm uninstall`
    and the kept claims and their volumes deleted (the namespace is the caller's)."""
    values_file = home / "platform-values.yaml"
    values_file.write_text(yaml.safe_dump(merged(values(env), overrides or {})))
    username, password = scram_admin()
    kubectl(
        "create", "secret", "generic", KAFKA_SECRET, f"--namespace={namespace}",
        f"--from-literal=username={username}", f"--from-literal=password={password}",
    )  # fmt: skip
    installing = Platform(namespace, home, values_file, 0.0)
    try:
        began = time.monotonic()
        result = installing.helm("install", RELEASE, str(CHART), "-f", str(values_file))
        assert result.returncode == 0, result.stderr
        wait_for("every platform pod Ready", lambda: all_ready(installing), 240)
        ready = time.monotonic() - began
        print(f"helm install -> NameNode, DataNode, metastore and PostgreSQL Ready: {ready:.1f}s")
        yield Platform(namespace, home, values_file, ready)
    finally:
        installing.helm("uninstall", RELEASE, "--wait", "--timeout=90s")
        delete_claims_and_volumes(namespace)


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dictionaries merged as helm merges values files (the override wins)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
