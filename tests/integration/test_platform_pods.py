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

import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import metastore_thrift_support as hms
import pytest
from node_support import get, kubectl, restricted_namespace, wait_for
from platform_support import (
    CHART,
    COMPONENTS,
    KAFKA_SECRET,
    KEPT_CLAIMS,
    PREFIX,
    RELEASE,
    SECRET,
    THRIFT_PORT,
    Platform,
    all_ready,
    installed,
    load_images,
    webhdfs,
)

from cryptopipe_testbed import node_images, node_manifests
from cryptopipe_testbed.components import node
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prepared(testbed: TestbedSession) -> dict[str, str]:
    """The real node, Kafka, and the images in the node's containerd; the test bed's env."""
    env = testbed.ensure("kube", "node", "images", "kafka")
    imported = load_images()
    print(f"images imported into containerd (seconds; 0.0: already there): {imported}")
    return env


@pytest.fixture(scope="module")
def platform(
    prepared: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    namespace = f"cpp-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", stdin=restricted_namespace(namespace))
    try:
        with installed(prepared, tmp_path_factory.mktemp("helm"), namespace) as ready:
            yield ready
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


def restarted(namespace: str, pod: dict[str, Any], status: dict[str, Any]) -> str:
    """Why a container restarted: its last termination and the previous run's log tail."""
    name = pod["metadata"]["name"]
    previous = kubectl("logs", name, f"--namespace={namespace}", "--previous", check=False)
    last = status.get("lastState", {}).get("terminated", {})
    tail = "\n".join(previous.splitlines()[-40:])
    return f"{name} restarted; last termination {last}; previous log:\n{tail}"


def test_platform_runs_in_real_pods_on_the_node(platform: Platform) -> None:
    pods = all_ready(platform)
    assert set(pods) == set(COMPONENTS)
    total = 0
    for component, pod in pods.items():
        assert pod["spec"]["nodeName"] == node.NODE_NAME
        (status,) = pod["status"]["containerStatuses"]
        assert status["containerID"].startswith("containerd://"), component
        assert status["restartCount"] == 0, restarted(platform.namespace, pod, status)
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


def test_the_restricted_namespace_admits_the_platform_and_refuses_a_root_pod(
    platform: Platform,
) -> None:
    """Pod Security admission is on in the test bed's API server: the namespace's label is
    enforced, so the platform's pods running there (above) were admitted under it."""
    ns = platform.namespace
    labels = get("namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in all_ready(platform).values():
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
    root_pod = ["run", "root-shell", f"--namespace={ns}", "--image=busybox", "--dry-run=server"]
    with pytest.raises(AssertionError, match='violates PodSecurity "restricted:latest"'):
        kubectl(*root_pod, "--", "sleep", "1")


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

    def read_back() -> tuple[int, bytes] | None:
        # Until the DataNode's block report reaches the new NameNode, reads are refused (403).
        answer = webhdfs(ns, namenode, "GET", path, "OPEN")
        return answer if answer[0] != 403 else None

    status, body = wait_for("the file readable again", read_back, 120)
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
    assert sorted(secrets) == sorted([SECRET, KAFKA_SECRET])  # the Kafka one is the test's own
    sandboxes = node.crictl("pods", "--namespace", ns, "--state=ready", "--quiet").stdout.split()
    assert sandboxes == [], "a pod sandbox of the platform still runs on the node"
    print(f"left after helm uninstall: claims {sorted(claims)}, secret {SECRET}")
