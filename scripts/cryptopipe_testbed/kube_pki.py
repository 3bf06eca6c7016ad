"""Certificates, the service-account key pair and kubeconfigs for the test bed's Kubernetes.

Everything is made once with `openssl` and reused on restart: a file is only written when it
is missing, and a certificate whose file is missing gets a fresh key as well.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptopipe_testbed import paths, process

DAYS = "3650"
CLUSTER = "cryptopipe-testbed"
SERVICE_IP = "10.96.0.1"
SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ClientCert:
    """A client identity: the API server maps CN to the user and each O to a group."""

    name: str
    user: str
    groups: tuple[str, ...] = ()


# Clients that get a certificate and a kubeconfig of their own.
CLIENTS = (
    ClientCert("admin", "cryptopipe-admin", ("system:masters",)),
    ClientCert("controller-manager", "system:kube-controller-manager"),
    ClientCert("scheduler", "system:kube-scheduler"),
    # kwok writes node and pod status for any fake node it manages, which no built-in role
    # (the node authorizer only lets a node touch itself) allows.
    ClientCert("kwok", "kwok", ("system:masters",)),
)
# Used by the API server to reach kubelets (logs, exec) on a real node.
KUBELET_CLIENT = ClientCert(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
)
FRONT_PROXY_CLIENT = ClientCert("front-proxy-client", "front-proxy-client")


@dataclass(frozen=True)
class Pki:
    root: Path

    def crt(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.crt("ca")

    @property
    def sa_public(self) -> Path:
        return self.root / "sa.pub"

    @property
    def sa_private(self) -> Path:
        return self.root / "sa.key"

    def kubeconfig(self, name: str) -> Path:
        return self.root.parent / "kubeconfig" / f"{name}.yaml"


def ensure(root: Path, server: str, advertise_ip: str) -> Pki:
    """Make whatever of the PKI under `root` is missing and return where it lies."""
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    _ca(pki, "ca", "cryptopipe-testbed-ca")
    _ca(pki, "front-proxy-ca", "cryptopipe-testbed-front-proxy-ca")
    apiserver_ips = ("127.0.0.1", SERVICE_IP, advertise_ip)
    if pki.crt("apiserver").exists() and not _has_ip_sans(pki.crt("apiserver"), apiserver_ips):
        pki.crt("apiserver").unlink()  # made for another advertise address: issue it again
    _serving(
        pki, "apiserver", "kube-apiserver", ips=apiserver_ips, names=("localhost", *SERVICE_NAMES)
    )
    for client in (*CLIENTS, KUBELET_CLIENT):
        _client(pki, client, "ca")
    _client(pki, FRONT_PROXY_CLIENT, "front-proxy-ca")
    _service_account_keys(pki)
    for client in CLIENTS:
        path = pki.kubeconfig(client.name)
        if not path.exists():
            write_kubeconfig(
                path,
                server,
                pki.ca,
                client.user,
                cert=pki.crt(client.name),
                key=pki.key(client.name),
            )
    return pki


def ensure_node(root: Path, server: str, node_name: str, node_ip: str) -> Pki:
    """The real node's certificates (under the control plane's CA) and its kubeconfigs: the
    kubelet as `system:node:<name>` (the Node authorizer's identity), with a serving
    certificate for its address, and kube-proxy as `system:kube-proxy` (system:node-proxier)."""
    pki = Pki(root)
    clients = (
        ClientCert("kubelet", f"system:node:{node_name}", ("system:nodes",)),
        ClientCert("kube-proxy", "system:kube-proxy"),
    )
    serving = pki.crt("kubelet-serving")
    if serving.exists() and not _has_ip_sans(serving, (node_ip,)):
        serving.unlink()
    _serving(pki, "kubelet-serving", f"system:node:{node_name}", ips=(node_ip,), names=(node_name,))
    for client in clients:
        _client(pki, client, "ca")
        path = pki.kubeconfig(client.name)
        if not path.exists():
            write_kubeconfig(
                path,
                server,
                pki.ca,
                client.user,
                cert=pki.crt(client.name),
                key=pki.key(client.name),
            )
    return pki


def _has_ip_sans(cert: Path, ips: Sequence[str]) -> bool:
    shown = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return all(f"IP Address:{ip}" in shown for ip in ips)


def _openssl(args: Sequence[str]) -> None:
    process.run(["openssl", *args], log=paths.log_dir() / "kube-pki.log")


def _new_key(path: Path) -> None:
    _openssl(
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)]
    )
    path.chmod(0o600)


def _subject(cn: str, groups: Sequence[str] = ()) -> str:
    return "".join(f"/O={group}" for group in groups) + f"/CN={cn}"


def _ca(pki: Pki, name: str, cn: str) -> None:
    if pki.crt(name).exists():
        return
    _new_key(pki.key(name))
    _openssl(
        [
            "req",
            "-x509",
            "-new",
            "-key",
            str(pki.key(name)),
            "-subj",
            _subject(cn),
            "-days",
            DAYS,
            "-out",
            str(pki.crt(name)),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]
    )


def _signed(pki: Pki, name: str, ca: str, subject: str, extensions: Sequence[str]) -> None:
    """Issue `name`.crt from `ca` with a fresh key, unless the certificate exists."""
    if pki.crt(name).exists():
        return
    _new_key(pki.key(name))
    csr = pki.root / f"{name}.csr"
    ext = pki.root / f"{name}.ext"
    ext.write_text("\n".join(["basicConstraints=critical,CA:FALSE", *extensions]) + "\n")
    _openssl(["req", "-new", "-key", str(pki.key(name)), "-subj", subject, "-out", str(csr)])
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki.crt(ca)),
            "-CAkey",
            str(pki.key(ca)),
            "-CAcreateserial",
            "-days",
            DAYS,
            "-extfile",
            str(ext),
            "-out",
            str(pki.crt(name)),
        ]
    )
    csr.unlink()
    ext.unlink()


def _serving(pki: Pki, name: str, cn: str, *, ips: Sequence[str], names: Sequence[str]) -> None:
    alt = ",".join([*(f"IP:{ip}" for ip in ips), *(f"DNS:{dns}" for dns in names)])
    _signed(
        pki,
        name,
        "ca",
        _subject(cn),
        [
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            f"subjectAltName={alt}",
        ],
    )


def _client(pki: Pki, client: ClientCert, ca: str) -> None:
    _signed(
        pki,
        client.name,
        ca,
        _subject(client.user, client.groups),
        ["keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=clientAuth"],
    )


def _service_account_keys(pki: Pki) -> None:
    if pki.sa_public.exists():
        return
    _openssl(
        [
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(pki.sa_private),
        ]
    )
    pki.sa_private.chmod(0o600)
    _openssl(["pkey", "-in", str(pki.sa_private), "-pubout", "-out", str(pki.sa_public)])


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    user: str,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """A single-context kubeconfig that authenticates by client certificate or token."""
    if token is not None:
        credentials = [f"    token: {token}"]
    elif cert is not None and key is not None:
        credentials = [f"    client-certificate: {cert}", f"    client-key: {key}"]
    else:
        raise ValueError("a kubeconfig needs a token or a client certificate and key")
    context = [f"    cluster: {CLUSTER}", f"    user: {user}"]
    if namespace is not None:
        context.append(f"    namespace: {namespace}")
    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        f"- name: {CLUSTER}",
        "  cluster:",
        f"    server: {server}",
        f"    certificate-authority: {ca}",
        "users:",
        f"- name: {user}",
        "  user:",
        *credentials,
        "contexts:",
        f"- name: {user}",
        "  context:",
        *context,
        f"current-context: {user}",
        "preferences: {}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path
