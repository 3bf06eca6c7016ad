"""A real node: containerd, the kubelet and kube-proxy on this machine, with CoreDNS and a
default StorageClass (local-path-provisioner) running as pods.

The node `testbed-node` has the address 10.242.0.1 on a port-less bridge made for it; the
kubelet and kube-proxy bind there and the API server advertises it, so pods reach the API
through the `kubernetes` Service. Pods get addresses from the node's pod CIDR on a second
bridge (the CNI bridge plugin's, no masquerade) and a rule drops any pod traffic that would
leave through another interface. The node carries the label `type=real` and no taint; the
kwok node's taint keeps ordinary pods off the fake node, and kwok pods select `type=kwok`.

`up` makes /run/netns a shared mount point before containerd mounts a pod's network namespace
there, so that a tool that does the same later (ip netns, CNI, podman) covers nothing.

`down` stops the daemons and every pod, unmounts what is left under the node's folders and
the pods' namespaces in /run/netns (covered ones too), and undoes the host changes `up`
recorded (node_host): links, the rule, kube-proxy's chains, the sysctls the kubelet and the
bridge plugin change, the kubelet's cgroups, and /run/netns as a mount point.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptopipe_testbed import (
    kube_pki,
    node_build,
    node_config,
    node_host,
    node_images,
    node_manifests,
    paths,
    process,
    versions,
)
from cryptopipe_testbed.components import kube
from cryptopipe_testbed.components.base import Component, Health

NODE_NAME = "testbed-node"
NODE_IP = kube.NODE_IP
NODE_BRIDGE = "cptb-node0"
POD_BRIDGE = "cptb-pods0"
NODE_LABEL = ("type", "real")
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
NETWORK = node_config.Network(
    node_name=NODE_NAME,
    node_ip=NODE_IP,
    pod_bridge=POD_BRIDGE,
    cluster_cidr=kube.CLUSTER_CIDR,
    cluster_dns=CLUSTER_DNS,
    cluster_domain=CLUSTER_DOMAIN,
    kubelet_port=10250,
    kubelet_healthz_port=20248,
    proxy_healthz_port=20256,
    proxy_metrics_port=20249,
)
# Pod traffic may only leave through the pod bridge (to another pod); anything headed for
# another interface (the machine's own network) is dropped before the filter table.
STAY_LOCAL_RULE = (
    "mangle",
    "FORWARD",
    "-s",
    kube.CLUSTER_CIDR,
    "!",
    "-o",
    POD_BRIDGE,
    "-m",
    "comment",
    "--comment",
    "cryptopipe-testbed: pod traffic stays on this machine",
    "-j",
    "DROP",
)
# Host folders a daemon creates outside the run folder whatever it is told, removed by
# `down` if `up` made them: the file prefix that is ours in each ("" for everything).
# containerd 1.6 mounts pod network namespaces here, a path it does not let us move.
NETNS_FOLDER = Path("/run/netns")
NETNS_PREFIX = "cni-"
HOST_FOLDERS = {
    Path("/run/containerd"): "",  # the shims' sockets
    NETNS_FOLDER: NETNS_PREFIX,  # pod network namespaces
    Path("/var/lib/cni"): node_config.CNI_NETWORK,  # libcni's result cache, podman's too
    Path("/var/lib/kubelet"): "",  # the device-plugin socket, at a fixed path
    Path("/var/log/containers"): "",  # the kubelet's links to container logs
}
CGROUP_ROOT = "kubepods"
FIELD_MANAGER = "cryptopipe-testbed"
ADDONS = (
    ("kube-system", "coredns"),
    (node_manifests.LOCAL_PATH_NAMESPACE, "local-path-provisioner"),
)

CONTAINERD = "node-containerd"
KUBELET = "node-kubelet"
KUBE_PROXY = "node-kube-proxy"
DAEMONS = (CONTAINERD, KUBELET, KUBE_PROXY)


def layout() -> node_config.Layout:
    return node_config.Layout(paths.component_run("node"))


def crictl_path() -> Path:
    return node_build.crictl_bin() / "crictl"


def crictl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    endpoint = f"unix://{layout().containerd_socket}"
    argv = [str(crictl_path()), f"--runtime-endpoint={endpoint}", f"--image-endpoint={endpoint}"]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _get_json(*args: str) -> dict[str, Any] | None:
    result = kube.kubectl("get", *args, "-o", "json", timeout=15)
    if result.returncode != 0:
        return None
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def node_object() -> dict[str, Any] | None:
    return _get_json("node", NODE_NAME)


def node_ready(node: dict[str, Any] | None, since: datetime | None = None) -> bool:
    """Ready, and (with `since`) reported by a kubelet after that moment: a node's Ready
    condition outlives its kubelet for the controller manager's grace period."""
    conditions = (node or {}).get("status", {}).get("conditions", [])
    for condition in conditions:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            heartbeat = datetime.fromisoformat(condition["lastHeartbeatTime"])
            return since is None or heartbeat >= since
    return False


def _addons_available() -> list[str]:
    """The add-ons that are not Available yet, or whose container does not run here (an
    Available status outlives the node's pods as a Ready condition does)."""
    waiting = []
    for namespace, name in ADDONS:
        deployment = _get_json("deployment", name, f"--namespace={namespace}")
        status = (deployment or {}).get("status", {})
        running = crictl("ps", "--quiet", "--state=running", f"--name=^{name}$").stdout.split()
        if not status.get("availableReplicas") or not running:
            waiting.append(f"{namespace}/{name}")
    return waiting


def node_pods() -> list[tuple[str, str]]:
    """(namespace/name, phase) of every pod bound to the real node."""
    listed = _get_json("pods", "--all-namespaces", f"--field-selector=spec.nodeName={NODE_NAME}")
    return [
        (
            f"{pod['metadata']['namespace']}/{pod['metadata']['name']}",
            pod["status"].get("phase", ""),
        )
        for pod in (listed or {}).get("items", [])
    ]


def _containerd_up() -> bool:
    socket = layout().containerd_socket
    if not socket.exists():
        return False
    result = subprocess.run(
        node_images.ctr_argv(socket, "version"), capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def _healthz(port: int) -> bool:
    return process.http_get(f"http://127.0.0.1:{port}/healthz") is not None


class Node(Component):
    name = "node"
    version = versions.KUBERNETES
    requires = ("kube",)

    def install(self) -> None:
        node_build.build_all()

    def start(self) -> None:
        # apt-get here, not in install(): installs run side by side and dpkg has one lock.
        node_build.install_packages()
        self.install()
        began = time.monotonic()
        # A kubelet started now must report Ready itself (heartbeats carry whole seconds).
        fresh = process.running_pid(KUBELET) is None
        since = datetime.now(UTC).replace(microsecond=0) if fresh else None
        where = layout()
        record = node_host.Record.load(where.record)
        if not record.sysctls:  # saved once, before the kubelet or a CNI plugin runs
            record.sysctls = node_host.read_sysctls()
            record.folders = [str(folder) for folder in HOST_FOLDERS if not folder.exists()]
            record.save(where.record)
        # Replies between pods on one bridge must pass kube-proxy's NAT rules too.
        node_host.ensure_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        node_host.ensure_bridge(record, NODE_BRIDGE, NODE_IP)
        node_host.adopt_link(record, POD_BRIDGE)
        record.save(where.record)
        if process.running_pid(CONTAINERD) is None:
            # Leftovers of a node that was killed would be covered by the bind mount below.
            node_host.release_namespace_folder(NETNS_FOLDER, NETNS_PREFIX, unshare=False)
        node_host.share_namespace_folder(record, NETNS_FOLDER)
        record.save(where.record)
        table, *rule = STAY_LOCAL_RULE
        node_host.ensure_rule(record, table, rule)
        record.save(where.record)
        certs = kube_pki.ensure_node(kube.run_dir() / "pki", kube.SERVER, NODE_NAME, NODE_IP)
        self._write_configs(where, certs)

        process.start(process.Daemon(CONTAINERD, self._containerd_argv(where)))
        process.wait_until(_containerd_up, what="containerd", logs=[CONTAINERD], timeout=60)
        node_images.import_all(where.containerd_socket, where.images)
        process.start(process.Daemon(KUBELET, self._kubelet_argv(where, certs)))
        process.wait_until(
            lambda: bool((node_object() or {}).get("spec", {}).get("podCIDR")),
            what=f"node {NODE_NAME} registered with a pod CIDR",
            logs=[KUBELET, CONTAINERD],
        )
        self._write_cni_config(where)
        process.start(process.Daemon(KUBE_PROXY, self._kube_proxy_argv(where)))
        process.wait_until(
            lambda: node_ready(node_object(), since) and _healthz(NETWORK.proxy_healthz_port),
            what=f"node {NODE_NAME} Ready and kube-proxy healthy",
            logs=[KUBELET, KUBE_PROXY, CONTAINERD],
        )
        print(f"node: {NODE_NAME} Ready after {time.monotonic() - began:.1f}s", flush=True)
        self._apply_addons(where)
        process.wait_until(
            lambda: not _addons_available(),
            what="CoreDNS and local-path-provisioner Available",
            logs=[KUBELET, CONTAINERD],
            timeout=180,
        )

    def _write_configs(self, where: node_config.Layout, certs: kube_pki.Pki) -> None:
        where.config.mkdir(parents=True, exist_ok=True)
        for folder in (where.cni_conf, where.cni_data, where.pod_logs, where.local_path):
            folder.mkdir(parents=True, exist_ok=True)
        texts = {
            "containerd.toml": node_config.containerd_config(where, node_images.PAUSE.reference),
            "kubelet.yaml": node_config.kubelet_config(
                where,
                NETWORK,
                certs.ca,
                certs.crt("kubelet-serving"),
                certs.key("kubelet-serving"),
            ),
            "kube-proxy.yaml": node_config.kube_proxy_config(
                NETWORK, certs.kubeconfig("kube-proxy")
            ),
        }
        for name, text in texts.items():
            (where.config / name).write_text(text)

    def _write_cni_config(self, where: node_config.Layout) -> None:
        pod_cidr = (node_object() or {}).get("spec", {}).get("podCIDR", "")
        path = where.cni_conf / "10-cryptopipe-testbed.conflist"
        text = node_config.cni_conflist(where, NETWORK, pod_cidr)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)

    def _containerd_argv(self, where: node_config.Layout) -> list[str]:
        return ["containerd", f"--config={where.config / 'containerd.toml'}"]

    def _kubelet_argv(self, where: node_config.Layout, certs: kube_pki.Pki) -> list[str]:
        return [
            str(node_build.kube_node_bin() / "kubelet"),
            f"--config={where.config / 'kubelet.yaml'}",
            f"--kubeconfig={certs.kubeconfig('kubelet')}",
            f"--root-dir={where.kubelet}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            f"--node-labels={'='.join(NODE_LABEL)}",
        ]

    def _kube_proxy_argv(self, where: node_config.Layout) -> list[str]:
        return [
            str(node_build.kube_node_bin() / "kube-proxy"),
            f"--config={where.config / 'kube-proxy.yaml'}",
        ]

    def _apply_addons(self, where: node_config.Layout) -> None:
        manifests = [
            *node_manifests.coredns(node_images.COREDNS.reference, CLUSTER_DNS, CLUSTER_DOMAIN),
            *node_manifests.local_path(
                node_images.LOCAL_PATH.reference, node_images.BUSYBOX.reference, where.local_path
            ),
        ]
        document = {"apiVersion": "v1", "kind": "List", "items": manifests}
        result = kube.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            stdin=json.dumps(document),
        )
        if result.returncode != 0:
            raise process.StartError(f"applying CoreDNS and local-path failed: {result.stderr}")

    def stop(self) -> None:
        where = layout()
        process.stop(KUBE_PROXY)
        process.stop(KUBELET)
        self._remove_pods(where)
        process.stop(CONTAINERD)
        if not where.record.exists():
            return
        record = node_host.Record.load(where.record)
        self._cleanup_proxy_rules(where)
        node_host.unmount_under([where.root])
        node_host.release_namespace_folder(
            NETNS_FOLDER, NETNS_PREFIX, unshare=str(NETNS_FOLDER) in record.shared_folders
        )
        node_host.delete_links(record.links)
        node_host.delete_rules(record.rules)
        node_host.restore_sysctls(record.sysctls)
        node_host.remove_empty_cgroups(CGROUP_ROOT)
        node_host.remove_links_into(Path("/var/log/containers"), where.root)
        for folder in map(Path, record.folders):
            if folder in HOST_FOLDERS:
                node_host.remove_made_folder(folder, HOST_FOLDERS[folder])
        where.record.unlink()

    def _remove_pods(self, where: node_config.Layout) -> None:
        """Stop and remove every pod sandbox (their mounts, network namespaces and veths go
        with them); a containerd that is down is started briefly for this."""
        config = where.config / "containerd.toml"
        if not config.exists() or not crictl_path().exists():
            return
        started = False
        if process.running_pid(CONTAINERD) is None:
            process.start(process.Daemon(CONTAINERD, self._containerd_argv(where)))
            started = True
            try:
                process.wait_until(_containerd_up, what="containerd", logs=[CONTAINERD], timeout=30)
            except process.StartError:
                process.stop(CONTAINERD)
                return
        crictl("stopp", *crictl("pods", "--quiet").stdout.split(), timeout=120)
        crictl("rmp", "--all", "--force", timeout=120)
        if started:
            process.stop(CONTAINERD)

    def _cleanup_proxy_rules(self, where: node_config.Layout) -> None:
        """kube-proxy removes its own chains and rules (KUBE-*) but for KUBE-FIREWALL, which
        it shares with kubelets; no other Kubernetes node runs on this machine."""
        binary = node_build.kube_node_bin() / "kube-proxy"
        if binary.exists():
            process.run(
                [str(binary), "--cleanup", f"--config={where.config / 'kube-proxy.yaml'}"],
                log=process.log_path("node-kube-proxy-cleanup"),
            )
        node_host.remove_chains("KUBE-")

    def health(self) -> Health:
        dead = [name for name in DAEMONS if process.running_pid(name) is None]
        if dead:
            return Health(False, f"not running: {', '.join(dead)}")
        node = node_object()
        if not node_ready(node):
            return Health(False, f"node {NODE_NAME} not Ready")
        waiting = _addons_available()
        if waiting:
            return Health(False, f"not Available: {', '.join(waiting)}")
        pods = node_pods()
        running = sum(phase == "Running" for _, phase in pods)
        held = node_images.containerd_images(layout().containerd_socket)
        return Health(
            True,
            f"node {NODE_NAME} Ready at {NODE_IP}; pods {running}/{len(pods)} Running: "
            f"{', '.join(name for name, _ in pods)}; images {len(held)}: {', '.join(held)}",
        )

    def address(self) -> str:
        return f"{NODE_IP} ({NODE_NAME})"

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_NODE_NAME": NODE_NAME,
            "CRYPTOPIPE_NODE_IP": NODE_IP,
            "CRYPTOPIPE_NODE_LABEL": "=".join(NODE_LABEL),
            "CRYPTOPIPE_NODE_TEST_IMAGE": node_images.BUSYBOX.reference,
            "CRYPTOPIPE_NODE_STORAGE_CLASS": node_manifests.STORAGE_CLASS,
            "CRYPTOPIPE_CONTAINERD_ADDRESS": str(layout().containerd_socket),
            "CRYPTOPIPE_CRICTL": str(crictl_path()),
        }
