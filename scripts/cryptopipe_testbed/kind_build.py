"""Build kind and kubeadm from the Go module proxy, and unpack kind's node-image base files.

kind v0.30.0 is the newest whose default Kubernetes (1.34) runs on this cgroup v1 host; kubeadm
comes from a wrapper module like the other Kubernetes commands, sharing the Go build cache.
`images/base/files` of kind's module are the systemd units, entrypoint and containerd
configuration of kind's own base image; the node image (kind_image) applies them the way kind's
base Dockerfile does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptopipe_testbed import kube_build, paths, versions

KIND_MODULE = "sigs.k8s.io/kind"


def kind_bin() -> Path:
    return paths.component_cache("kind", versions.KIND) / "bin"


def kubeadm_bin() -> Path:
    return paths.component_cache("kubeadm", versions.KUBERNETES) / "bin"


def base_files() -> Path:
    """kind's images/base/files, copied out of the read-only module cache."""
    return paths.component_cache("kind", versions.KIND) / "base-files"


def build_all() -> None:
    kube_build._once("kind", versions.KIND, _build_kind)
    kube_build._once("kubeadm", versions.KUBERNETES, _build_kubeadm)


def _build_kind(dest: Path, log: Path) -> None:
    kube_build._go(
        ["install", "-trimpath", "-ldflags", "-s -w", f"{KIND_MODULE}@{versions.KIND}"],
        log=log,
        extra_env={"GOBIN": str(dest / "bin")},
    )
    kube_build._go(["mod", "download", f"{KIND_MODULE}@{versions.KIND}"], log=log)
    files = dest / "base-files"
    shutil.rmtree(files, ignore_errors=True)
    source = kube_build.module_dir(KIND_MODULE, versions.KIND) / "images" / "base" / "files"
    shutil.copytree(source, files)
    for path in (files, *files.rglob("*")):
        path.chmod(0o755 if path.is_dir() or _executable(path) else 0o644)


def _executable(path: Path) -> bool:
    return path.parent.name == "bin" or path.suffix == ".sh"


def _build_kubeadm(dest: Path, log: Path) -> None:
    version = versions.KUBERNETES
    kube_go_mod = kube_build._module_go_mod("k8s.io/kubernetes", version, log)
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    extra = [
        *kube_build._directives(kube_go_mod, ["go", "godebug"]),
        *kube_build._staging_replaces(kube_go_mod, staging_version),
    ]
    tool = "k8s.io/kubernetes/cmd/kubeadm"
    module = kube_build._wrapper_module(
        dest, "kubeadm", ("k8s.io/kubernetes", version), [tool], extra, log
    )
    flags = kube_build._ldflags(
        *kube_build._version_flags("k8s.io/component-base/version", version),
        *kube_build._version_flags("k8s.io/client-go/pkg/version", version),
    )
    kube_build._go(
        ["build", "-trimpath", "-ldflags", flags, "-o", str(dest / "bin") + "/", tool],
        log=log,
        cwd=module,
    )
