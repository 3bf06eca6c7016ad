"""Build the Kubernetes control plane, etcd, kwok and helm from the Go module proxy.

Each build goes to its own version-keyed cache folder and is marked complete only when it
finished, so an interrupted build is redone. The Go module and build caches are shared.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptopipe_testbed import paths, process, versions

COMPLETE_MARKER = ".complete"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
# A fixed date keeps the binaries reproducible; it is only reported by `version` commands.
BUILD_DATE = "1970-01-01T00:00:00Z"
HELM_KUBE_MINOR = "34"


def go_env() -> dict[str, str]:
    root = paths.cache_root() / "go"
    return {
        "GOMODCACHE": str(root / "mod"),
        "GOCACHE": str(root / "build"),
        "CGO_ENABLED": "0",
        "GOFLAGS": "-buildvcs=false",
        # Never fetch a different Go toolchain: only the module proxy is reachable.
        "GOTOOLCHAIN": "local",
    }


def module_dir(module: str, version: str) -> Path:
    """Where `go mod download` unpacked a module (case-encoded as the module cache does)."""
    encoded = re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)
    return Path(go_env()["GOMODCACHE"]) / f"{encoded}@{version}"


def kube_bin() -> Path:
    return paths.component_cache("kubernetes", versions.KUBERNETES) / "bin"


def etcd_bin() -> Path:
    return paths.component_cache("etcd", versions.ETCD) / "bin"


def kwok_bin() -> Path:
    return paths.component_cache("kwok", versions.KWOK) / "bin"


def helm_bin() -> Path:
    return paths.component_cache("helm", versions.HELM) / "bin"


def kwok_module() -> Path:
    return module_dir("sigs.k8s.io/kwok", versions.KWOK)


def build_all() -> None:
    """Build every binary that is not cached yet, one at a time (a Go build uses every core)."""
    _once("kubernetes", versions.KUBERNETES, _build_kubernetes)
    _once("etcd", versions.ETCD, _build_etcd)
    _once("kwok", versions.KWOK, _build_kwok)
    _once("helm", versions.HELM, _build_helm)


def _once(name: str, version: str, build: Callable[[Path, Path], None]) -> None:
    dest = paths.component_cache(name, version)
    if (dest / COMPLETE_MARKER).exists():
        return
    shutil.rmtree(dest / "bin", ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    build(dest, paths.log_dir() / f"install-{name}-{version}.log")
    (dest / COMPLETE_MARKER).write_text("ok\n")


def _go(
    args: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> None:
    process.run(["go", *args], log=log, cwd=cwd, env={**go_env(), **(extra_env or {})})


def _ldflags(*pairs: tuple[str, str]) -> str:
    return " ".join(["-s", "-w", *(f"-X {key}={value}" for key, value in pairs)])


def _version_flags(package: str, version: str) -> list[tuple[str, str]]:
    """The variables Kubernetes' own build stamps into component-base and client-go."""
    major, minor = version.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
    }
    return [(f"{package}.{key}", value) for key, value in values.items()]


def _module_go_mod(module: str, version: str, log: Path) -> str:
    _go(["mod", "download", f"{module}@{version}"], log=log)
    return (module_dir(module, version) / "go.mod").read_text()


def _staging_replaces(kube_go_mod: str, staging_version: str) -> list[str]:
    """Kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging;
    a module depending on it must point them at their published versions instead."""
    staged = re.findall(r"^\s*(k8s\.io/[\w.-]+) v0\.0\.0\s*$", kube_go_mod, flags=re.MULTILINE)
    return [f"replace {module} => {module} {staging_version}" for module in staged]


def _directives(go_mod: str, names: Sequence[str]) -> list[str]:
    pattern = rf"^(?:{'|'.join(names)}) .*$"
    return re.findall(pattern, go_mod, flags=re.MULTILINE)


def _wrapper_module(
    dest: Path,
    name: str,
    require: tuple[str, str],
    tools: Sequence[str],
    extra: Sequence[str],
    log: Path,
) -> Path:
    """Write a module that requires `require` and lists `tools`, then let `go mod tidy`
    resolve and record every dependency."""
    module = dest / "module"
    shutil.rmtree(module, ignore_errors=True)
    module.mkdir(parents=True)
    lines = [
        f"module cryptopipe.local/testbed/{name}",
        "",
        *extra,
        "",
        f"require {require[0]} {require[1]}",
        "",
        *(f"tool {tool}" for tool in tools),
    ]
    (module / "go.mod").write_text("\n".join(lines) + "\n")
    _go(["mod", "tidy"], log=log, cwd=module)
    return module


def _build_kubernetes(dest: Path, log: Path) -> None:
    version = versions.KUBERNETES
    kube_go_mod = _module_go_mod("k8s.io/kubernetes", version, log)
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    extra = [
        *_directives(kube_go_mod, ["go", "godebug"]),
        *_staging_replaces(kube_go_mod, staging_version),
    ]
    tools = [f"k8s.io/kubernetes/cmd/{command}" for command in KUBE_COMMANDS]
    module = _wrapper_module(dest, "kubernetes", ("k8s.io/kubernetes", version), tools, extra, log)
    flags = _ldflags(
        *_version_flags("k8s.io/component-base/version", version),
        *_version_flags("k8s.io/client-go/pkg/version", version),
    )
    _go(
        ["build", "-trimpath", "-ldflags", flags, "-o", str(dest / "bin") + "/", *tools],
        log=log,
        cwd=module,
    )


def _build_etcd(dest: Path, log: Path) -> None:
    server = "go.etcd.io/etcd/server/v3"
    etcd_go_mod = _module_go_mod(server, versions.ETCD, log)
    extra = _directives(etcd_go_mod, ["go"])
    module = _wrapper_module(dest, "etcd", (server, versions.ETCD), [server], extra, log)
    _go(
        ["build", "-trimpath", "-ldflags", _ldflags(), "-o", str(dest / "bin" / "etcd"), server],
        log=log,
        cwd=module,
    )


def _build_kwok(dest: Path, log: Path) -> None:
    flags = _ldflags(
        ("sigs.k8s.io/kwok/pkg/consts.Version", versions.KWOK),
        ("sigs.k8s.io/kwok/pkg/consts.KubeVersion", versions.KUBERNETES),
    )
    _go(
        ["install", "-trimpath", "-ldflags", flags, f"sigs.k8s.io/kwok/cmd/kwok@{versions.KWOK}"],
        log=log,
        extra_env={"GOBIN": str(dest / "bin")},
    )


def _build_helm(dest: Path, log: Path) -> None:
    helm_go_mod = _module_go_mod("helm.sh/helm/v3", versions.HELM, log)
    client_go = re.search(r"^\s*k8s\.io/client-go (v\S+)", helm_go_mod, flags=re.MULTILINE)
    pairs = [
        ("helm.sh/helm/v3/internal/version.version", versions.HELM),
        ("helm.sh/helm/v3/internal/version.gitTreeState", "clean"),
    ]
    # Charts render and lint for the cluster we run, not for helm's compiled-in default.
    for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        pairs += [
            (f"{package}.k8sVersionMajor", "1"),
            (f"{package}.k8sVersionMinor", HELM_KUBE_MINOR),
        ]
    if client_go is not None:
        pairs += _version_flags("k8s.io/client-go/pkg/version", client_go.group(1))
    _go(
        [
            "install",
            "-trimpath",
            "-ldflags",
            _ldflags(*pairs),
            f"helm.sh/helm/v3/cmd/helm@{versions.HELM}",
        ],
        log=log,
        extra_env={"GOBIN": str(dest / "bin")},
    )
