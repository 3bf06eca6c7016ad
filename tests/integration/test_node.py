"""The test bed's real node: containerd, kubelet, kube-proxy, CoreDNS and local-path storage.

Every pod here really runs (a locally built busybox image, imported into containerd); the
last test takes the node down, checks that the machine is as it was, and brings it back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_testbed import node_host, paths
from cryptopipe_testbed.components import kube, node
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

NODE_SELECTOR = {node.NODE_LABEL[0]: node.NODE_LABEL[1]}
KWOK_SCHEDULING = {
    "nodeSelector": {kube.FAKE_NODE_LABEL[0]: kube.FAKE_NODE_LABEL[1]},
    "tolerations": [{"key": kube.FAKE_NODE_TAINT[0], "operator": "Exists"}],
}


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = kube.kubectl(*args, stdin=stdin, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def get(*args: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json"))
    return parsed


def apply(namespace: str, *objects: dict[str, Any]) -> None:
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    kubectl("apply", f"--namespace={namespace}", "-f", "-", stdin=document)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def pod(
    name: str, image: str, command: list[str], spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container], **(spec or {})},
    }


def phase(namespace: str, name: str) -> str:
    status: dict[str, Any] = get("pod", name, f"--namespace={namespace}").get("status", {})
    return str(status.get("phase", ""))


def wait_running(namespace: str, *names: str) -> None:
    wait_for(lambda: all(phase(namespace, name) == "Running" for name in names), f"{names} Running")


@pytest.fixture(scope="module")
def node_env(testbed: TestbedSession) -> dict[str, str]:
    return testbed.ensure("node")


@pytest.fixture(scope="module")
def image(node_env: dict[str, str]) -> str:
    return node_env["CRYPTOPIPE_NODE_TEST_IMAGE"]


@pytest.fixture(scope="module")
def namespace(node_env: dict[str, str]) -> Iterator[str]:
    name = f"node-test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def shell(namespace: str, image: str) -> str:
    """A long-running pod to exec into (logs a marker first)."""
    apply(namespace, pod("shell", image, ["sh", "-c", "echo shell-started; exec sleep 3600"]))
    wait_running(namespace, "shell")
    return "shell"


def exec_in(namespace: str, name: str, script: str) -> str:
    return kubectl("exec", f"--namespace={namespace}", name, "--", "sh", "-c", script)


def test_node_is_ready_at_its_own_address(node_env: dict[str, str]) -> None:
    found = get("node", node.NODE_NAME)
    addresses = {a["type"]: a["address"] for a in found["status"]["addresses"]}
    assert addresses["InternalIP"] == node_env["CRYPTOPIPE_NODE_IP"] == kube.NODE_IP
    assert node.node_ready(found)
    assert found["metadata"]["labels"][node.NODE_LABEL[0]] == node.NODE_LABEL[1]
    assert not found["spec"].get("taints")
    assert found["spec"]["podCIDR"].startswith("10.244.")
    info = found["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.34.12"
    assert info["containerRuntimeVersion"].startswith("containerd://1.6")
    # The node address is on this machine, on the bridge `up` made, not on its own interface.
    shown = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", node.NODE_BRIDGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"inet {kube.NODE_IP}/32" in shown


def test_pod_runs_from_a_local_image_with_logs_and_exec(namespace: str, shell: str) -> None:
    placed = get("pod", shell, f"--namespace={namespace}")
    assert placed["spec"]["nodeName"] == node.NODE_NAME
    assert placed["status"]["podIP"].startswith("10.244.")
    wait_for(
        lambda: "shell-started" in kubectl("logs", f"--namespace={namespace}", shell),
        "the pod's log line",
        timeout=30,
    )
    assert exec_in(namespace, shell, "echo $((6 * 7)); id -u").split() == ["42", "65534"]


def test_service_is_reached_by_dns_name_from_another_pod(
    namespace: str, image: str, shell: str
) -> None:
    token = uuid.uuid4().hex
    # FROM scratch has no /tmp: the web root is an emptyDir.
    serve = f"echo {token} > /www/index.html && exec httpd -f -p 8080 -h /www"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    web = pod("web", image, ["sh", "-c", serve], {"volumes": [{"name": "www", "emptyDir": {}}]})
    web["spec"]["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/www"}]
    apply(namespace, web, service)
    wait_running(namespace, "web")
    name = f"web.{namespace}.svc.cluster.local"
    resolved = exec_in(namespace, shell, f"nslookup {name} {node.CLUSTER_DNS}")
    cluster_ip = get("service", "web", f"--namespace={namespace}")["spec"]["clusterIP"]
    assert cluster_ip in resolved

    def served() -> bool:
        fetched = kube.kubectl(
            "exec",
            f"--namespace={namespace}",
            shell,
            "--",
            "timeout",
            "5",
            "wget",
            "-qO-",
            "http://web/",
        )
        return fetched.returncode == 0 and fetched.stdout.strip() == token

    wait_for(served, "the Service to answer by its short name", timeout=30)
    assert port_forward_get(namespace, "web", 8080) == token


def port_forward_get(namespace: str, pod_name: str, port: int) -> str:
    """GET / through `kubectl port-forward` (API server -> kubelet -> containerd)."""
    argv = [str(kube.kubectl_path()), f"--kubeconfig={kube.admin_kubeconfig()}"]
    argv += [f"--namespace={namespace}", "port-forward", f"pod/{pod_name}", f":{port}"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as fwd:
        try:
            assert fwd.stdout is not None
            first = fwd.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 8080
            local = first.split("127.0.0.1:")[1].split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as answer:
                return str(answer.read().decode().strip())
        finally:
            fwd.terminate()


def test_pod_reaches_the_api_through_the_kubernetes_service(namespace: str, shell: str) -> None:
    endpoints = get("endpointslice", "kubernetes", "--namespace=default")["endpoints"]
    assert endpoints[0]["addresses"] == [kube.NODE_IP]
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    # busybox's wget verifies no certificate; its -T crashes, so `timeout` bounds it.
    fetch = "timeout 10 wget -qO- --no-check-certificate https://kubernetes.default.svc/api"
    # Discovery is open to authenticated users only: the pod's token is accepted.
    answer = json.loads(
        exec_in(namespace, shell, f'{fetch} --header "Authorization: Bearer $(cat {token})"')
    )
    assert answer["kind"] == "APIVersions"
    assert answer["versions"] == ["v1"]
    anonymous = kube.kubectl("exec", f"--namespace={namespace}", shell, "--", "sh", "-c", fetch)
    assert anonymous.returncode != 0
    assert "403" in anonymous.stderr


def test_pod_traffic_never_leaves_the_machine(namespace: str, shell: str) -> None:
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=True
    ).stdout.split()
    gateway = route[route.index("via") + 1]
    table, chain = node.STAY_LOCAL_RULE[:2]

    def dropped() -> int:
        listed = subprocess.run(
            ["iptables", "-w", "5", "-t", table, "-L", chain, "-v", "-x", "-n"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (line,) = [line for line in listed.splitlines() if "cryptopipe-testbed" in line]
        return int(line.split()[0])

    before = dropped()
    reached = kube.kubectl(
        "exec", f"--namespace={namespace}", shell, "--", "nc", "-w", "2", gateway, "53"
    )
    assert reached.returncode != 0
    assert dropped() > before


def test_claim_is_bound_by_the_default_storage_class_and_written(
    namespace: str, image: str, node_env: dict[str, str]
) -> None:
    classes = get("storageclass")["items"]
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults == [node_env["CRYPTOPIPE_NODE_STORAGE_CLASS"]]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }
    token = uuid.uuid4().hex
    writer = pod(
        "writer",
        image,
        ["sh", "-c", f"echo {token} > /data/file && cat /data/file"],
        {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "fsGroup": 1000},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    )
    writer["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    apply(namespace, claim, writer)
    wait_for(
        lambda: phase(namespace, "writer") in {"Succeeded", "Failed"}, "the writer", timeout=120
    )
    assert phase(namespace, "writer") == "Succeeded"
    assert kubectl("logs", f"--namespace={namespace}", "writer").strip() == token
    bound = get("pvc", "data", f"--namespace={namespace}")
    assert bound["status"]["phase"] == "Bound"
    assert bound["spec"]["storageClassName"] == "local-path"
    volume = get("pv", bound["spec"]["volumeName"])
    host_path = Path(volume["spec"]["hostPath"]["path"])
    assert host_path.parent == node.layout().local_path
    assert (host_path / "file").read_text().strip() == token

    kubectl("delete", f"--namespace={namespace}", "pod/writer", "pvc/data", "--wait=true")
    wait_for(lambda: not host_path.exists(), "the provisioner to remove the volume", timeout=90)


def test_real_and_fake_pods_stay_on_their_own_nodes(namespace: str, image: str) -> None:
    sleep = ["sleep", "3600"]
    apply(
        namespace,
        pod("plain", image, sleep),
        pod("on-kwok", image, sleep, KWOK_SCHEDULING),
        # Tolerating the fake node's taint is not enough to end up there by accident.
        pod("real-tolerant", image, sleep, {**KWOK_SCHEDULING, "nodeSelector": NODE_SELECTOR}),
        pod("kwok-intolerant", image, sleep, {"nodeSelector": KWOK_SCHEDULING["nodeSelector"]}),
    )
    wait_running(namespace, "plain", "on-kwok", "real-tolerant")

    def node_of(name: str) -> str:
        return str(get("pod", name, f"--namespace={namespace}")["spec"].get("nodeName", ""))

    assert node_of("plain") == node.NODE_NAME
    assert node_of("real-tolerant") == node.NODE_NAME
    assert node_of("on-kwok") == kube.FAKE_NODE

    def unschedulable() -> bool:
        status = get("pod", "kwok-intolerant", f"--namespace={namespace}")["status"]
        return any(c.get("reason") == "Unschedulable" for c in status.get("conditions", []))

    wait_for(unschedulable, "the pod without the toleration to stay Unschedulable")
    assert node_of("kwok-intolerant") == ""
    # kwok only pretends: the kwok pod has no sandbox in containerd; the real ones do.
    sandboxes = node.crictl("pods", "--namespace", namespace, "--output", "json").stdout
    names = {item["metadata"]["name"] for item in json.loads(sandboxes)["items"]}
    assert {"plain", "real-tolerant"} <= names
    assert "on-kwok" not in names


def test_status_shows_the_node_its_pods_and_images(shell: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cryptopipe_testbed", "status", "node"],
        capture_output=True,
        text=True,
        check=False,
        cwd=paths.REPO_ROOT / "scripts",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("node "))
    assert f"node {node.NODE_NAME} Ready at {kube.NODE_IP}" in line
    assert "kube-system/coredns-" in line
    assert "local-path-storage/local-path-provisioner-" in line
    for image in ("pause", "coredns", "local-path-provisioner", "busybox"):
        assert f"localhost/cryptopipe-testbed/{image}:" in line


def host_state(layout_root: Path) -> dict[str, Any]:
    """What `up` may change on the host: links, iptables rules, mounts, sysctls, folders."""

    def rules(command: str) -> list[str]:
        dump = subprocess.run([command], capture_output=True, text=True, check=True).stdout
        return sorted(
            line for line in dump.splitlines() if "KUBE-" in line or "cryptopipe-testbed" in line
        )

    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    ours = (str(layout_root), "/run/netns/cni-", "/run/containerd")
    return {
        "links": sorted(name for name in node_host.links() if name.startswith("cptb-")),
        "iptables": rules("iptables-save"),
        "ip6tables": rules("ip6tables-save"),
        "mounts": [point for point in points if point.startswith(ours)],
        "netns_mounted": node_host.is_mount_point(node.NETNS_FOLDER),
        "sysctls": node_host.read_sysctls(),
        "folders": sorted(str(folder) for folder in node.HOST_FOLDERS if folder.exists()),
    }


def ip_netns(*args: str) -> None:
    subprocess.run(["ip", "netns", *args], capture_output=True, text=True, check=True)


def test_down_restores_the_host_after_a_tool_upgraded_the_netns_folder(
    node_env: dict[str, str],
) -> None:
    """The fresh-machine sequence: /run/netns a plain folder, the node up, then a tool that
    upgrades /run/netns to a mount point (ip netns here; CNI and podman do the same), then
    `down`. The node comes back whatever happens, so one failure stays one failure."""
    component = node.Node()
    try:
        component.stop()
        folder = node.NETNS_FOLDER
        while node_host.is_mount_point(folder) and node_host.mount_entries(folder) == [str(folder)]:
            subprocess.run(["umount", str(folder)], check=True)
        before = host_state(node.layout().root)
        assert not before["netns_mounted"], f"something else is mounted in {folder}"

        component.start()
        record = node_host.Record.load(node.layout().record)
        assert record.sysctls, "up records the sysctls before changing them"
        running = host_state(node.layout().root)
        assert running["links"] == sorted([node.NODE_BRIDGE, node.POD_BRIDGE])
        assert running["iptables"] and running["netns_mounted"]
        assert any(point.startswith(f"{folder}/{node.NETNS_PREFIX}") for point in running["mounts"])
        scratch = f"cptb-scratch-{uuid.uuid4().hex[:8]}"
        ip_netns("add", scratch)
        ip_netns("delete", scratch)

        component.stop()
        after = host_state(node.layout().root)
        assert after["links"] == []
        assert after["iptables"] == []
        assert after["ip6tables"] == []
        assert after["mounts"] == []
        assert after["netns_mounted"] is False
        assert after["sysctls"] == record.sysctls == before["sysctls"]
        assert after["folders"] == before["folders"]
        assert not list(folder.glob(f"{node.NETNS_PREFIX}*"))
        assert not component.health().healthy
    finally:
        if not component.health().healthy:
            component.stop()
            component.start()
    assert component.health().healthy


def test_up_again_while_running_changes_nothing(node_env: dict[str, str]) -> None:
    component = node.Node()
    first = host_state(node.layout().root)
    component.start()
    second = host_state(node.layout().root)
    assert first["links"] == second["links"]
    assert first["netns_mounted"] and second["netns_mounted"]
    # Only our rules: kube-proxy rewrites its KUBE-* chains whenever Services or endpoints change.
    ours = [[line for line in state["iptables"] if "cryptopipe-testbed" in line]
            for state in (first, second)]  # fmt: skip
    assert ours[0] == ours[1] and len(ours[1]) == 1
    assert component.health().healthy


def _covered_namespace_folder(names: tuple[str, ...]) -> Path:
    """A scratch folder as a tool that upgraded it late leaves it: each namespace mounted,
    then the folder bound recursively onto itself, the originals covered beneath."""
    folder = Path("/run") / f"cptb-netns-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    for name in names:
        (folder / name).touch()
        subprocess.run(["mount", "--bind", "/proc/self/ns/net", str(folder / name)], check=True)
    subprocess.run(["mount", "--rbind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "--make-shared", str(folder)], check=True)
    return folder


def _remove_scratch_folder(folder: Path) -> None:
    for _ in range(4):
        node_host.unmount_under([folder])
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_covered_namespace_mounts_are_released() -> None:
    folder = _covered_namespace_folder(("cni-a", "cni-b"))
    try:
        assert node_host.mount_entries(folder).count(f"{folder}/cni-a") == 2
        blocked = subprocess.run(["rm", str(folder / "cni-a")], capture_output=True, check=False)
        assert blocked.returncode != 0  # the trap: the covered original keeps the file busy

        released = node_host.release_namespace_folder(folder, "cni-", unshare=True)
        assert str(folder) in released
        assert node_host.mount_entries(folder) == []
        assert list(folder.iterdir()) == []
    finally:
        _remove_scratch_folder(folder)


def test_another_tools_namespace_is_never_detached_to_reach_ours() -> None:
    folder = _covered_namespace_folder(("cni-a", "netns-theirs"))
    try:
        with pytest.raises(node_host.HostError, match="netns-theirs"):
            node_host.release_namespace_folder(folder, "cni-", unshare=True)
        assert f"{folder}/netns-theirs" in node_host.mount_entries(folder)
        assert (folder / "netns-theirs").exists()
    finally:
        _remove_scratch_folder(folder)
