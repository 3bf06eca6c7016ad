"""Kubernetes: etcd, the control plane and a kwok fake node, reached on 127.0.0.1.

kube-apiserver listens on every address and advertises the real node's address (`node`), so
pods on that node reach it through the `kubernetes` Service.

The fake node `kwok-node-0` carries the label `type=kwok` and the taint
`kwok.x-k8s.io/node=fake:NoSchedule`: pods land on it only when they tolerate that taint
(and select the label to insist on it), so tests meant for a real node never run there.
kwok makes pods on it Running, and Job pods Succeeded, without running anything.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptopipe_testbed import (
    kube_build,
    kube_pki,
    kubeconform,
    paths,
    process,
    prometheus,
    versions,
)
from cryptopipe_testbed.components.base import Component, Health

HOST = "127.0.0.1"
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 16443
CONTROLLER_MANAGER_PORT = 20257
SCHEDULER_PORT = 20259
# The real node's address, on a bridge `scripts/testbed up node` creates (components/node.py).
# The API server listens on every IPv4 address, so clients keep using 127.0.0.1 and pods reach
# it at this address through the `kubernetes` Service (it refuses to advertise loopback).
NODE_IP = "10.242.0.1"
ADVERTISE_IP = NODE_IP
BIND_ADDRESS = "0.0.0.0"  # noqa: S104
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.244.0.0/16"
SERVER = f"https://{HOST}:{APISERVER_PORT}"
ETCD_URL = f"http://{HOST}:{ETCD_CLIENT_PORT}"

ETCD = "kube-etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KWOK = "kube-kwok"
DAEMONS = (ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER, KWOK)

FAKE_NODE = "kwok-node-0"
FAKE_NODE_LABEL = ("type", "kwok")
FAKE_NODE_TAINT = ("kwok.x-k8s.io/node", "fake", "NoSchedule")
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# kwok's own stage definitions (in its module): node setup, lease heartbeat, pod lifecycle.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def run_dir() -> Path:
    return paths.component_run("kube")


def pki() -> kube_pki.Pki:
    return kube_pki.Pki(run_dir() / "pki")


def bin_dir() -> Path:
    """One folder with every binary (links into the version-keyed build caches)."""
    return run_dir() / "bin"


def kubectl_path() -> Path:
    return kube_build.kube_bin() / "kubectl"


def established(crd: str, kubeconfig: Path | None = None) -> bool:
    path = '{.status.conditions[?(@.type=="Established")].status}'
    result = kubectl("get", crd, "-o", f"jsonpath={path}", kubeconfig=kubeconfig)
    return result.returncode == 0 and result.stdout.strip() == "True"


def wait_established(
    crds: Sequence[str], kubeconfig: Path | None = None, timeout: float = 60.0
) -> None:
    """Wait for CRDs (`crd/<name>`) to be served. Not `kubectl wait --for=condition=...`: it
    fails outright on a CRD created a moment ago, whose status has no conditions yet."""
    process.wait_until(
        lambda: all(established(crd, kubeconfig) for crd in crds),
        what=f"{', '.join(crds)} Established",
        logs=[],
        timeout=timeout,
    )


def helm_path() -> Path:
    return kube_build.helm_bin() / "helm"


def admin_kubeconfig() -> Path:
    return pki().kubeconfig("admin")


def kubectl(
    *args: str, kubeconfig: Path | None = None, stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the test bed (as admin unless told otherwise); never raises."""
    argv = [str(kubectl_path()), f"--kubeconfig={kubeconfig or admin_kubeconfig()}", *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def service_account_kubeconfig(
    namespace: str, service_account: str, dest: Path, duration: str = "1h"
) -> Path:
    """A kubeconfig that acts as the ServiceAccount, with exactly the RBAC it was granted."""
    result = kubectl(
        "create", "token", service_account, f"--namespace={namespace}", f"--duration={duration}"
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl create token failed: {result.stderr.strip()}")
    user = f"system:serviceaccount:{namespace}:{service_account}"
    return kube_pki.write_kubeconfig(
        dest, SERVER, pki().ca, user, token=result.stdout.strip(), namespace=namespace
    )


def _api_get(path: str, timeout: float = 3.0) -> bytes | None:
    """GET from the API server as admin; None when it does not answer 200."""
    certs = pki()
    try:
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.load_cert_chain(str(certs.crt("admin")), str(certs.key("admin")))
        with urllib.request.urlopen(SERVER + path, timeout=timeout, context=context) as answer:  # noqa: S310
            body: bytes = answer.read()
            return body
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return None


def _healthz(port: int) -> bool:
    """The controller manager and scheduler serve /healthz to anyone, over a self-signed cert."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(
            f"https://{HOST}:{port}/healthz", timeout=3.0, context=context
        ) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _fake_node_ready() -> bool:
    """Ready, and its lease renewed by a live kwok (a node's Ready condition outlives kwok)."""
    node = _api_get(f"/api/v1/nodes/{FAKE_NODE}")
    lease = _api_get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{FAKE_NODE}")
    if node is None or lease is None:
        return False
    conditions = json.loads(node).get("status", {}).get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    spec = json.loads(lease).get("spec", {})
    if not ready or "renewTime" not in spec:
        return False
    renewed = datetime.fromisoformat(spec["renewTime"])
    expires = renewed + timedelta(seconds=spec.get("leaseDurationSeconds", 0))
    return expires > datetime.now(UTC)


def _apiserver_ready() -> bool:
    return _api_get("/readyz") == b"ok"


def _etcd_healthy() -> bool:
    body = process.http_get(f"{ETCD_URL}/health")
    return body is not None and json.loads(body).get("health") == "true"


class Kubernetes(Component):
    name = "kube"
    version = versions.KUBERNETES

    def install(self) -> None:
        kube_build.build_all()
        kubeconform.install()
        prometheus.install()  # promtool for the alert rules' tests, the server for scraping
        self._link_binaries()

    def _link_binaries(self) -> None:
        folder = bin_dir()
        folder.mkdir(parents=True, exist_ok=True)
        sources = [
            kube_build.kube_bin(),
            kube_build.etcd_bin(),
            kube_build.kwok_bin(),
            kube_build.helm_bin(),
            kubeconform.bin_path().parent,
        ]
        for binary in (path for source in sources for path in source.iterdir()):
            link = folder / binary.name
            if not link.is_symlink() or link.resolve() != binary:
                link.unlink(missing_ok=True)
                link.symlink_to(binary)

    def start(self) -> None:
        self.install()
        certs = kube_pki.ensure(run_dir() / "pki", SERVER, ADVERTISE_IP)
        process.start(process.Daemon(ETCD, self._etcd_argv()))
        process.wait_until(_etcd_healthy, what="etcd", logs=[ETCD])
        process.start(process.Daemon(APISERVER, self._apiserver_argv(certs)))
        process.wait_until(_apiserver_ready, what="kube-apiserver /readyz", logs=[ETCD, APISERVER])
        process.start(process.Daemon(CONTROLLER_MANAGER, self._controller_manager_argv(certs)))
        process.start(process.Daemon(SCHEDULER, self._scheduler_argv(certs)))
        process.wait_until(
            lambda: _healthz(CONTROLLER_MANAGER_PORT) and _healthz(SCHEDULER_PORT),
            what="controller manager and scheduler /healthz",
            logs=[CONTROLLER_MANAGER, SCHEDULER],
        )
        if process.running_pid(KWOK) is None:
            self._release_node_lease()
        process.start(process.Daemon(KWOK, self._kwok_argv(certs)))
        self._create_fake_node()
        process.wait_until(
            _fake_node_ready, what=f"fake node {FAKE_NODE} Ready", logs=[KWOK, CONTROLLER_MANAGER]
        )

    def _etcd_argv(self) -> list[str]:
        peer = f"http://{HOST}:{ETCD_PEER_PORT}"
        return [
            str(kube_build.etcd_bin() / "etcd"),
            "--name=testbed",
            f"--data-dir={run_dir() / 'etcd'}",
            f"--listen-client-urls={ETCD_URL}",
            f"--advertise-client-urls={ETCD_URL}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}",
            # A throwaway test bed: skip fsync, which makes a loaded machine's etcd crawl.
            "--unsafe-no-fsync",
        ]

    def _apiserver_argv(self, certs: kube_pki.Pki) -> list[str]:
        return [
            str(kube_build.kube_bin() / "kube-apiserver"),
            f"--etcd-servers={ETCD_URL}",
            f"--bind-address={BIND_ADDRESS}",
            f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={ADVERTISE_IP}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={certs.crt('apiserver')}",
            f"--tls-private-key-file={certs.key('apiserver')}",
            f"--client-ca-file={certs.ca}",
            f"--kubelet-client-certificate={certs.crt(kube_pki.KUBELET_CLIENT.name)}",
            f"--kubelet-client-key={certs.key(kube_pki.KUBELET_CLIENT.name)}",
            f"--kubelet-certificate-authority={certs.ca}",
            # A node's hostname resolves nowhere here; its InternalIP is the node address.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={certs.sa_public}",
            f"--service-account-signing-key-file={certs.sa_private}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--cert-dir={run_dir() / 'apiserver-certs'}",
            *self._front_proxy_flags(certs),
            f"--proxy-client-cert-file={certs.crt(kube_pki.FRONT_PROXY_CLIENT.name)}",
            f"--proxy-client-key-file={certs.key(kube_pki.FRONT_PROXY_CLIENT.name)}",
            "--profiling=false",
        ]

    def _front_proxy_flags(self, certs: kube_pki.Pki) -> list[str]:
        return [
            f"--requestheader-client-ca-file={certs.crt('front-proxy-ca')}",
            f"--requestheader-allowed-names={kube_pki.FRONT_PROXY_CLIENT.user}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        ]

    def _component_flags(self, certs: kube_pki.Pki, client: str, port: int) -> list[str]:
        """Flags the controller manager and the scheduler share."""
        kubeconfig = certs.kubeconfig(client)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={port}",
            f"--cert-dir={run_dir() / f'{client}-certs'}",
            f"--client-ca-file={certs.ca}",
            f"--requestheader-client-ca-file={certs.crt('front-proxy-ca')}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _controller_manager_argv(self, certs: kube_pki.Pki) -> list[str]:
        return [
            str(kube_build.kube_bin() / "kube-controller-manager"),
            *self._component_flags(certs, "controller-manager", CONTROLLER_MANAGER_PORT),
            f"--cluster-signing-cert-file={certs.ca}",
            f"--cluster-signing-key-file={certs.key('ca')}",
            f"--root-ca-file={certs.ca}",
            f"--service-account-private-key-file={certs.sa_private}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={CLUSTER_CIDR}",
            # Its default lies under /usr/libexec, outside the run folder.
            f"--flex-volume-plugin-dir={run_dir() / 'flexvolume'}",
        ]

    def _scheduler_argv(self, certs: kube_pki.Pki) -> list[str]:
        return [
            str(kube_build.kube_bin() / "kube-scheduler"),
            *self._component_flags(certs, "scheduler", SCHEDULER_PORT),
        ]

    def _kwok_argv(self, certs: kube_pki.Pki) -> list[str]:
        stages = kube_build.kwok_module() / "kustomize" / "stage"
        missing = [stage for stage in KWOK_STAGES if not (stages / stage).exists()]
        if missing:
            raise process.StartError(f"kwok stage definitions missing under {stages}: {missing}")
        return [
            str(kube_build.kwok_bin() / "kwok"),
            f"--kubeconfig={certs.kubeconfig('kwok')}",
            *(f"--config={stages / stage}" for stage in KWOK_STAGES),
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={'='.join(KWOK_ANNOTATION)}",
            # The lease heartbeat stage only runs when kwok keeps node leases.
            "--node-lease-duration-seconds=40",
        ]

    def _release_node_lease(self) -> None:
        """A new kwok process has a new identity and would wait for its predecessor's lease
        to expire (up to its 40 s duration) before touching the node or its pods."""
        result = kubectl(
            "delete", "lease", FAKE_NODE, "--namespace=kube-node-lease", "--ignore-not-found"
        )
        if result.returncode != 0:
            raise process.StartError(f"releasing the lease of {FAKE_NODE} failed: {result.stderr}")

    def _create_fake_node(self) -> None:
        key, value, effect = FAKE_NODE_TAINT
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE,
                "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
                "labels": {
                    FAKE_NODE_LABEL[0]: FAKE_NODE_LABEL[1],
                    "kubernetes.io/hostname": FAKE_NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"taints": [{"key": key, "value": value, "effect": effect}]},
        }
        result = kubectl("apply", "-f", "-", stdin=json.dumps(node))
        if result.returncode != 0:
            raise process.StartError(f"creating node {FAKE_NODE} failed: {result.stderr}")

    def stop(self) -> None:
        for name in reversed(DAEMONS):
            process.stop(name)

    def health(self) -> Health:
        if not _apiserver_ready():
            return Health(False, f"kube-apiserver {SERVER}/readyz not ok")
        dead = [name for name in DAEMONS if process.running_pid(name) is None]
        if dead:
            return Health(False, f"not running: {', '.join(dead)}")
        if not _fake_node_ready():
            return Health(False, f"node {FAKE_NODE} not Ready")
        return Health(True, f"{SERVER} ready, node {FAKE_NODE} Ready")

    def address(self) -> str:
        return SERVER

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(admin_kubeconfig()),
            "CRYPTOPIPE_KUBE_BIN": str(bin_dir()),
            "CRYPTOPIPE_KUBECTL": str(kubectl_path()),
            "CRYPTOPIPE_HELM": str(helm_path()),
            "CRYPTOPIPE_KUBECONFORM": str(kubeconform.bin_path()),
        }
