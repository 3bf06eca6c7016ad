"""The platform chart in real pods on the test bed's real node.

helm installs charts/cryptopipe-platform with `kafka.provider: external` (the test bed's Kafka,
which pods reach through the node's address), HDFS, the Hive metastore and PostgreSQL (the test
bed's stand-in for the official image, node_images.POSTGRES) on local-path volumes. `helm test`
runs the chart's hooks for real; then the NameNode and the metastore pods are deleted and come
back with their data, `helm upgrade` keeps the generated database password, and `helm
uninstall` leaves only what the chart keeps on purpose (persistence.keepOnUninstall, the
default: the three data claims and the database password's Secret). The module removes those
itself, with the volumes local-path made for them, and its namespace.

From this machine the pods' addresses are routed to the node's pod bridge, so the test talks
to WebHDFS and the metastore's Thrift port directly (WebHDFS redirects to the DataNode pod).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import metastore_thrift_support as hms
import pytest
import yaml

from cryptopipe_testbed import node_images, node_load, node_manifests
from cryptopipe_testbed.components import images, kube, node
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "cryptopipe-platform"
RELEASE = "cpp"
PREFIX = "cryptopipe"  # the chart's platformName
OUR_IMAGES = ("hadoop", "hive-metastore", "producer")
COMPONENTS = ("hdfs-namenode", "hdfs-datanode", "hive-metastore", "postgres")
SECRET = f"{PREFIX}-hive-metastore-db"
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
            "external": {"bootstrapServers": env["CRYPTOPIPE_KAFKA_POD_BOOTSTRAP"]},
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


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = kube.kubectl(*args, stdin=stdin, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def get(*args: str) -> Any:
    result = kube.kubectl("get", *args, "-o", "json", timeout=60)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@dataclass(frozen=True)
class Platform:
    namespace: str
    home: Path
    values_file: Path
    ready_seconds: float

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(kube.admin_kubeconfig()),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        argv = [str(kube.helm_path()), *args, f"--namespace={self.namespace}"]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The component's pods that are not on their way out."""
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
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


@pytest.fixture(scope="module")
def prepared(testbed: TestbedSession) -> dict[str, str]:
    """The real node, Kafka, and the images in the node's containerd; the test bed's env."""
    env = testbed.ensure("kube", "node", "images", "kafka")
    images.build(list(OUR_IMAGES))  # layer-cache hits unless the sources changed
    imported = node_load.load(OUR_IMAGES)
    where = node.layout()
    began = time.monotonic()
    if node_images.ensure(node_images.POSTGRES, where.containerd_socket, where.images):
        imported["postgres"] = time.monotonic() - began
    print(f"images imported into containerd (seconds; 0.0: already there): {imported}")
    return env


@pytest.fixture(scope="module")
def platform(
    prepared: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    namespace = f"cpp-{uuid.uuid4().hex[:6]}"
    home = tmp_path_factory.mktemp("helm")
    values_file = home / "values.yaml"
    values_file.write_text(yaml.safe_dump(values(prepared)))
    kubectl("create", "namespace", namespace)
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
        try:
            delete_claims_and_volumes(namespace)
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def container_memory(container_id: str) -> tuple[int, int]:
    """(RSS, working set) in bytes of one container: its cgroup's memory.stat (cgroup v1)."""
    inspected = json.loads(node.crictl("inspect", container_id).stdout)
    cgroup = inspected["info"]["runtimeSpec"]["linux"]["cgroupsPath"]
    stat_file = Path("/sys/fs/cgroup/memory") / cgroup.lstrip("/") / "memory.stat"
    stats = dict(line.split() for line in stat_file.read_text().splitlines())
    usage = int((stat_file.parent / "memory.usage_in_bytes").read_text())
    return int(stats["total_rss"]), usage - int(stats["total_inactive_file"])


def test_platform_runs_in_real_pods_on_the_node(platform: Platform) -> None:
    pods = all_ready(platform)
    assert set(pods) == set(COMPONENTS)
    total = 0
    for component, pod in pods.items():
        assert pod["spec"]["nodeName"] == node.NODE_NAME
        (status,) = pod["status"]["containerStatuses"]
        assert status["containerID"].startswith("containerd://"), component
        assert status["restartCount"] == 0, component
        rss, working_set = container_memory(status["containerID"].removeprefix("containerd://"))
        total += rss
        print(f"{component}: RSS {rss / 2**20:.0f} MiB, working set {working_set / 2**20:.0f} MiB")
        assert 0 < rss < 640 * 2**20, component
    print(f"platform pods' RSS together: {total / 2**20:.0f} MiB")
    postgres = pods["postgres"]
    (container,) = postgres["spec"]["containers"]
    assert container["image"] == node_images.POSTGRES.reference
    assert postgres["spec"]["securityContext"]["runAsUser"] == 999
    # Every claim got a volume from the node's StorageClass.
    claims = get("pvc", f"--namespace={platform.namespace}")["items"]
    assert {c["metadata"]["name"] for c in claims} == KEPT_CLAIMS
    for claim in claims:
        assert claim["spec"]["storageClassName"] == node_manifests.STORAGE_CLASS
        assert claim["status"]["phase"] == "Bound"


def test_helm_test_passes_against_the_real_pods(platform: Platform) -> None:
    began = time.monotonic()
    result = platform.helm("test", RELEASE, "--timeout=240s")
    output = result.stdout + result.stderr
    print(f"helm test: {time.monotonic() - began:.1f}s")
    assert result.returncode == 0, output
    # Each hook pod exits 0 only after its check passed (and is deleted then, so its log is gone).
    suites = re.findall(r"TEST SUITE:\s+(\S+)\n(?:.*\n){2}Phase:\s+(\w+)", output)
    assert sorted(suites) == [
        (f"{PREFIX}-{hook}", "Succeeded")
        for hook in ("test-kafka", "test-metastore", "test-webhdfs")
    ], output


def pod_address(namespace: str, host: str) -> str:
    """A pod's address for its cluster DNS name (<pod>.<service>.<namespace>.svc...), which
    only cluster DNS resolves; any other host as it is."""
    labels = host.split(".")
    if len(labels) < 4 or labels[2] != namespace or labels[3] != "svc":
        return host
    pod = get("pod", labels[0], f"--namespace={namespace}")
    return str(pod["status"]["podIP"])


def webhdfs(
    namespace: str, host: str, method: str, path: str, op: str, body: bytes | None = None
) -> tuple[int, bytes]:
    """One WebHDFS call to the NameNode at `host`; a redirect to a DataNode is followed."""
    query = urllib.parse.urlencode({"op": op, "user.name": "cryptopipe-test", "overwrite": "false"})
    url = f"http://{host}:{WEBHDFS_PORT}/webhdfs/v1{path}?{query}"
    for _ in range(2):
        parts = urllib.parse.urlsplit(url)
        address = pod_address(namespace, str(parts.hostname))
        connection = http.client.HTTPConnection(address, parts.port, timeout=30)
        connection.request(method, f"{parts.path}?{parts.query}", body=body)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 307:
            return answer.status, data
        url = str(answer.getheader("Location"))
    raise AssertionError(f"{op} {path}: redirected twice")


def hdfs_path(location: str) -> str:
    """/user/... of hdfs://<namenode>:<port>/user/..."""
    return urllib.parse.urlsplit(location).path


def test_namenode_and_metastore_pods_come_back_with_their_data(platform: Platform) -> None:
    suffix = uuid.uuid4().hex[:6]
    path, payload = f"/faults/{suffix}.txt", uuid.uuid4().bytes * 1000
    namenode = platform.ip("hdfs-namenode")
    ns = platform.namespace
    status, body = webhdfs(ns, namenode, "PUT", path, "CREATE", payload)
    assert status == 201, body
    metastore = platform.ip("hive-metastore")
    database, table = f"faults_{suffix}", "trades"
    columns = {"symbol": "string", "price": "double", "ts": "bigint"}
    hms.create_database(metastore, THRIFT_PORT, database)
    hms.create_text_table(metastore, THRIFT_PORT, database, table, columns)
    created = hms.get_table(metastore, THRIFT_PORT, database, table)
    # The metastore made the table's folder on this platform's HDFS.
    status, body = webhdfs(ns, namenode, "GET", hdfs_path(created.location), "GETFILESTATUS")
    assert status == 200 and json.loads(body)["FileStatus"]["type"] == "DIRECTORY", body

    before = {c: platform.ready_pod(c) for c in ("hdfs-namenode", "hive-metastore")}
    began = time.monotonic()
    for pod in before.values():
        assert pod is not None
        name = pod["metadata"]["name"]
        kubectl("delete", "pod", name, f"--namespace={platform.namespace}", "--wait=false")

    old_uids = {pod["metadata"]["uid"] for pod in before.values() if pod}
    back: dict[str, float] = {}

    def replaced() -> bool:
        for component in before:
            pod = platform.ready_pod(component)
            if component not in back and pod and pod["metadata"]["uid"] not in old_uids:
                back[component] = time.monotonic() - began
        return len(back) == len(before)

    wait_for("a new NameNode and metastore pod Ready", replaced, 180)
    took = ", ".join(f"{component} {seconds:.1f}s" for component, seconds in back.items())
    print(f"NameNode and metastore pods deleted -> replacements Ready: {took}")

    namenode = platform.ip("hdfs-namenode")
    status, body = webhdfs(ns, namenode, "GET", path, "OPEN")
    assert (status, body) == (200, payload)
    metastore = platform.ip("hive-metastore")
    assert database in hms.get_all_databases(metastore, THRIFT_PORT)
    assert hms.get_table(metastore, THRIFT_PORT, database, table) == created
    assert created.columns == columns and created.table_type == "MANAGED_TABLE"
    assert hdfs_path(hms.get_database_location(metastore, THRIFT_PORT, database)).endswith(
        f"/{database}.db"
    )


def test_helm_upgrade_keeps_the_generated_database_password(platform: Platform) -> None:
    password = platform.secret_password()
    assert len(password) == 32
    old = platform.ready_pod("hive-metastore")
    postgres = platform.ready_pod("postgres")
    assert old is not None and postgres is not None
    began = time.monotonic()
    result = platform.helm(
        "upgrade", RELEASE, str(CHART), "-f", str(platform.values_file),
        "--set", "hiveMetastore.heap=320m",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    def rolled() -> dict[str, Any] | None:
        pod = platform.ready_pod("hive-metastore")
        fresh = pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]
        return pod if fresh else None

    new = wait_for("the upgraded metastore pod Ready", rolled, 180)
    print(f"helm upgrade -> new metastore pod Ready: {time.monotonic() - began:.1f}s")
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env["JAVA_OPTS"] == "-Xmx320m"
    assert platform.secret_password() == password
    # PostgreSQL kept its data folder and the password initdb gave it; the new metastore logs
    # in with the Secret's password, so the two still agree.
    after = platform.ready_pod("postgres")
    assert after is not None and after["metadata"]["uid"] == postgres["metadata"]["uid"]
    metastore = str(new["status"]["podIP"])
    assert "default" in hms.get_all_databases(metastore, THRIFT_PORT)


def test_helm_uninstall_leaves_only_the_claims_and_the_password_kept_on_purpose(
    platform: Platform,
) -> None:
    ns = platform.namespace
    result = platform.helm("uninstall", RELEASE, "--wait", "--timeout=120s")
    assert result.returncode == 0, result.stderr
    wait_for("every pod gone", lambda: not get("pods", f"--namespace={ns}")["items"], 120)
    kinds = "services,statefulsets,deployments,configmaps,serviceaccounts,roles,rolebindings"
    left = get(kinds, f"--namespace={ns}", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert left == [], [f"{o['kind']}/{o['metadata']['name']}" for o in left]
    services = get("services", f"--namespace={ns}")["items"]
    assert services == [], [s["metadata"]["name"] for s in services]
    # Kept on purpose (persistence.keepOnUninstall: true, the default): the data claims, so a
    # reinstall finds HDFS and the metastore's database again, and the Secret with the password
    # that database was created with (helm.sh/resource-policy: keep).
    claims = {c["metadata"]["name"] for c in get("pvc", f"--namespace={ns}")["items"]}
    assert claims == KEPT_CLAIMS
    secrets = [s["metadata"]["name"] for s in get("secrets", f"--namespace={ns}")["items"]]
    assert secrets == [SECRET]
    sandboxes = node.crictl("pods", "--namespace", ns, "--state=ready", "--quiet").stdout.split()
    assert sandboxes == [], "a pod sandbox of the platform still runs on the node"
    print(f"left after helm uninstall: claims {sorted(claims)}, secret {SECRET}")
