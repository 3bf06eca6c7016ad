"""Build the real node's Go binaries and fetch its Debian payloads, each into a cache folder.

kubelet and kube-proxy come from a wrapper module like the control plane's (it shares the Go
build cache, so most packages are already compiled); crictl and CoreDNS from `go install`;
local-path-provisioner from a copy of its module (its vendor/ folder is incomplete, so it
builds with -mod=mod). The static binaries of catatonit (the pause process) and busybox (the
storage helper and test image) come from Debian packages, unpacked but never installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cryptopipe_testbed import kube_build, paths, process, versions

NODE_COMMANDS = ("kubelet", "kube-proxy")
# Debian packages: containerd and runc run the pods, the CNI plugins wire them.
APT_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "iproute2")
REQUIRED_FILES = (
    Path("/usr/bin/containerd"),
    Path("/usr/bin/ctr"),
    Path("/usr/lib/cni/bridge"),
    Path("/usr/lib/cni/host-local"),
    Path("/usr/lib/cni/loopback"),
)
REQUIRED_COMMANDS = ("runc", "iptables", "ip")
# Unpacked from Debian's archive (apt-get download), never installed on the host.
DEBIAN_PAYLOADS = {"catatonit": "usr/bin/catatonit", "busybox-static": "bin/busybox"}


def kube_node_bin() -> Path:
    return paths.component_cache("kube-node", versions.KUBERNETES) / "bin"


def crictl_bin() -> Path:
    return paths.component_cache("crictl", versions.CRICTL) / "bin"


def coredns_bin() -> Path:
    return paths.component_cache("coredns", versions.COREDNS) / "bin"


def local_path_bin() -> Path:
    return paths.component_cache("local-path-provisioner", versions.LOCAL_PATH_PROVISIONER) / "bin"


def debian_payload_dir() -> Path:
    return paths.component_cache("node-payloads", versions.DEBIAN_SUITE) / "bin"


def _log() -> Path:
    return paths.log_dir() / "install-node.log"


def install_packages() -> None:
    """apt-get install what is missing (we run as root, as the kubelet must)."""
    present = all(path.exists() for path in REQUIRED_FILES) and all(
        shutil.which(command) for command in REQUIRED_COMMANDS
    )
    if present:
        return
    print(f"node: apt-get install {' '.join(APT_PACKAGES)}", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=300"]  # another apt-get (podman, PostgreSQL) may run
    process.run(["apt-get", *wait, "update"], log=_log(), env=env)
    process.run(
        ["apt-get", *wait, "install", "-y", "--no-install-recommends", *APT_PACKAGES],
        log=_log(),
        env=env,
    )


def build_all() -> None:
    """Every binary that is not cached yet, one at a time (a Go build uses every core)."""
    kube_build._once("kube-node", versions.KUBERNETES, _build_kube_node)
    kube_build._once("crictl", versions.CRICTL, _build_crictl)
    kube_build._once("coredns", versions.COREDNS, _build_coredns)
    kube_build._once("local-path-provisioner", versions.LOCAL_PATH_PROVISIONER, _build_local_path)
    kube_build._once("node-payloads", versions.DEBIAN_SUITE, _fetch_debian_payloads)


def _build_kube_node(dest: Path, log: Path) -> None:
    version = versions.KUBERNETES
    kube_go_mod = kube_build._module_go_mod("k8s.io/kubernetes", version, log)
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    extra = [
        *kube_build._directives(kube_go_mod, ["go", "godebug"]),
        *kube_build._staging_replaces(kube_go_mod, staging_version),
    ]
    tools = [f"k8s.io/kubernetes/cmd/{command}" for command in NODE_COMMANDS]
    module = kube_build._wrapper_module(
        dest, "kube-node", ("k8s.io/kubernetes", version), tools, extra, log
    )
    flags = kube_build._ldflags(
        *kube_build._version_flags("k8s.io/component-base/version", version),
        *kube_build._version_flags("k8s.io/client-go/pkg/version", version),
    )
    kube_build._go(
        ["build", "-trimpath", "-ldflags", flags, "-o", str(dest / "bin") + "/", *tools],
        log=log,
        cwd=module,
    )


def _go_install(dest: Path, log: Path, package: str, *pairs: tuple[str, str]) -> None:
    kube_build._go(
        ["install", "-trimpath", "-ldflags", kube_build._ldflags(*pairs), package],
        log=log,
        extra_env={"GOBIN": str(dest / "bin")},
    )


def _build_crictl(dest: Path, log: Path) -> None:
    _go_install(
        dest,
        log,
        f"sigs.k8s.io/cri-tools/cmd/crictl@{versions.CRICTL}",
        ("sigs.k8s.io/cri-tools/pkg/version.Version", versions.CRICTL),
    )


def _build_coredns(dest: Path, log: Path) -> None:
    _go_install(dest, log, f"github.com/coredns/coredns@{versions.COREDNS}")


def _build_local_path(dest: Path, log: Path) -> None:
    module = "github.com/rancher/local-path-provisioner"
    kube_build._go(["mod", "download", f"{module}@{versions.LOCAL_PATH_PROVISIONER}"], log=log)
    source = dest / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(kube_build.module_dir(module, versions.LOCAL_PATH_PROVISIONER), source)
    for folder in (source, *(path for path in source.rglob("*") if path.is_dir())):
        folder.chmod(0o755)  # the module cache is read-only
    shutil.rmtree(source / "vendor")
    binary = dest / "bin" / "local-path-provisioner"
    flags = kube_build._ldflags(("main.VERSION", versions.LOCAL_PATH_PROVISIONER))
    kube_build._go(
        ["build", "-mod=mod", "-trimpath", "-ldflags", flags, "-o", str(binary), "."],
        log=log,
        cwd=source,
    )
    shutil.rmtree(source)


def _fetch_debian_payloads(dest: Path, log: Path) -> None:
    work = dest / "debs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    packages = list(DEBIAN_PAYLOADS)
    try:
        process.run(["apt-get", "download", *packages], log=log, cwd=work)
    except process.StartError:  # stale or missing package lists on a fresh machine
        process.run(["apt-get", "update"], log=log)
        process.run(["apt-get", "download", *packages], log=log, cwd=work)
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for package, member in DEBIAN_PAYLOADS.items():
        (deb,) = work.glob(f"{package}_*.deb")
        tree = work / package
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        shutil.copy2(tree / member, dest / "bin" / Path(member).name)
    shutil.rmtree(work)
