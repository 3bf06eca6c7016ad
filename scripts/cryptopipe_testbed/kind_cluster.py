"""A kind cluster on this machine, offline, with podman, leaving the host as it found it.

    python -m cryptopipe_testbed.kind_cluster create|delete|image|env [--name NAME]
    python -m cryptopipe_testbed.kind_cluster kind ARGS...   (kind with the podman provider)
    (scripts/kind-offline is the same command)

`env` prints KUBECONFIG, KIND, KUBECTL and HELM as shell assignments: the cluster's kubeconfig
and the binaries the test bed builds (first, unless --no-build), for `scripts/cluster --offline`.

`create` builds the node image (kind_image) if needed, then runs `kind create cluster` with
kind's podman provider on a podman network of our own. The node container is privileged, so
what it writes to the host is recorded first and undone by `delete`:
- the sysctls its kubelet writes (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops)
  and the forwarding switch podman's bridge sets: saved before, restored after;
- /lib/modules, which kind's podman provider mounts and this host lacks: made, then removed;
- the podman network (its bridge, its CNI configuration and iptables rules): made, then removed;
- the chains podman's CNI firewall and portmap plugins add (CNI-FORWARD, CNI-HOSTPORT-*) and
  leave behind when their last network goes: those `create` did not find are removed once all
  of them are back to their empty skeleton (no other network's rule in them); the ones it
  found (another podman network's, say) stay.
The kubeconfig goes to the run folder (`kubeconfig_path`), never to ~/.kube.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptopipe_testbed import kind_build, kind_image, kube_build, node_host, paths, process
from cryptopipe_testbed.components import images

CLUSTER = "cryptopipe"
NETWORK = "cryptopipe-kind"
MODULES = Path("/lib/modules")
CNI_PREFIX = "CNI-"
# The comments and marks of the rules the firewall and portmap plugins put in their own chains.
CNI_SKELETON = (
    "CNI firewall plugin admin overrides",
    "CNI portfwd masquerade mark",
    "0x2000/0x2000",
)
# One node; kindnetd cannot be had here, so the node image carries a static CNI configuration.
CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
nodes:
  - role: control-plane
"""


@dataclass
class HostChanges:
    """What `create` changed on the host, so that `delete` undoes exactly that."""

    sysctls: dict[str, str] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    network: bool = False
    # The CNI plugins' shared chains that existed before `create` (others podman made for us).
    cni_chains_before: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> HostChanges:
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def _folder(name: str) -> Path:
    path = paths.run_root() / "kind" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_path(name: str) -> Path:
    return _folder(name) / "host-changes.json"


def kubeconfig_path(name: str) -> Path:
    return _folder(name) / "kubeconfig"


def kind_env() -> dict[str, str]:
    """kind's podman provider, with the test bed's podman configuration and network."""
    return {
        **os.environ,
        **images.podman_env(),
        "KIND_EXPERIMENTAL_PROVIDER": "podman",
        "KIND_EXPERIMENTAL_PODMAN_NETWORK": NETWORK,
        "PATH": f"{kind_build.kind_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def kind(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kind_build.kind_bin() / "kind"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=kind_env(),
        check=False,
    )


def clusters() -> list[str]:
    """The kind clusters that exist; none before kind is built (a fresh machine), since only
    our kind makes them here."""
    if not _executable(kind_build.kind_bin() / "kind"):
        return []
    return kind("get", "clusters").stdout.split()


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def node_container(name: str) -> str:
    return f"{name}-control-plane"


def _network_exists() -> bool:
    return images.podman("network", "exists", NETWORK, check=False).returncode == 0


def _cni_rules() -> tuple[list[str], list[str]]:
    """The CNI plugins' chains and the rules appended to them, in every table."""
    chains, rules = [], []
    for command in ("iptables-save", "ip6tables-save"):
        dump = subprocess.run([command], capture_output=True, text=True, check=False).stdout
        chains += [line for line in dump.splitlines() if line.startswith(":" + CNI_PREFIX)]
        rules += [line for line in dump.splitlines() if line.startswith("-A " + CNI_PREFIX)]
    return chains, rules


def _cni_chains_idle() -> bool:
    """Only the plugins' own skeleton rules are left: no network or port mapping uses them."""
    _, rules = _cni_rules()
    return all(any(marker in rule for marker in CNI_SKELETON) for rule in rules)


def create(name: str = CLUSTER) -> float:
    """Create the cluster unless it exists; seconds `kind create cluster` took (0.0 if none)."""
    kind_build.build_all()
    image = kind_image.build()
    if name in clusters():
        return 0.0
    record = HostChanges.load(record_path(name))
    if not record.sysctls:  # saved once, before the node's kubelet or podman's bridge runs
        record.sysctls = node_host.read_sysctls()
    if not MODULES.exists():
        MODULES.mkdir(parents=True)
        record.folders.append(str(MODULES))
    if not record.network:  # recorded once, before our network's first container
        record.cni_chains_before = sorted({line[1:].split()[0] for line in _cni_rules()[0]})
    if not _network_exists():
        images.podman("network", "create", NETWORK)
        record.network = True
    record.save(record_path(name))
    began = time.monotonic()
    created = kind(
        "create", "cluster", "--name", name, "--image", image, "--config", "-",
        "--kubeconfig", str(kubeconfig_path(name)), "--wait", "5m",
        stdin=CONFIG,
    )  # fmt: skip
    if created.returncode != 0:
        raise process.StartError(f"kind create cluster failed:\n{created.stderr[-4000:]}")
    return time.monotonic() - began


def delete(name: str = CLUSTER) -> list[str]:
    """Delete the cluster and undo every recorded host change; what was undone."""
    undone: list[str] = []
    if name in clusters():
        deleted = kind("delete", "cluster", "--name", name,
                       "--kubeconfig", str(kubeconfig_path(name)))  # fmt: skip
        if deleted.returncode != 0:
            raise process.StartError(f"kind delete cluster failed:\n{deleted.stderr[-4000:]}")
        undone.append(f"cluster {name}")
    recorded = record_path(name).exists()
    record = HostChanges.load(record_path(name))
    if record.network and _network_exists():
        images.podman("network", "rm", NETWORK)
        undone.append(f"podman network {NETWORK}")
    if recorded and _cni_chains_idle():  # no record: nothing known to be ours
        keep = frozenset(record.cni_chains_before)
        undone += node_host.remove_chains(CNI_PREFIX, keep=keep)
    undone += [f"sysctl {s}" for s in node_host.restore_sysctls(record.sysctls)]
    for folder in map(Path, record.folders):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            undone.append(f"folder {folder}")
    record_path(name).unlink(missing_ok=True)
    kubeconfig_path(name).unlink(missing_ok=True)
    return undone


def node_cgroup(controller: str, name: str = CLUSTER) -> Path:
    """The node container's cgroup (v1) folder for `controller` (memory, cpuacct, ...)."""
    cgroup = images.podman(
        "inspect", "--format", "{{.State.CgroupPath}}", node_container(name)
    ).stdout.strip()
    return Path("/sys/fs/cgroup") / controller / cgroup.lstrip("/")


def peak_memory(name: str = CLUSTER) -> int:
    """Bytes: the node container's peak memory since creation or the last reset (its cgroup v1
    high-water mark, which counts page cache too: loaded images, written files)."""
    return int((node_cgroup("memory", name) / "memory.max_usage_in_bytes").read_text())


def reset_peak_memory(name: str = CLUSTER) -> None:
    (node_cgroup("memory", name) / "memory.max_usage_in_bytes").write_text("0")


def resident_memory(name: str = CLUSTER) -> int:
    """Bytes: the node container's resident memory now (rss, without page cache)."""
    stat = (node_cgroup("memory", name) / "memory.stat").read_text().split()
    fields = dict(zip(stat[::2], stat[1::2], strict=True))
    return int(fields["total_rss"])


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if argv[:1] == ["kind"]:
        kind_build.build_all()
        return subprocess.run([str(kind_build.kind_bin() / "kind"), *argv[1:]],
                              env=kind_env(), check=False).returncode  # fmt: skip
    parser = argparse.ArgumentParser(prog="scripts/kind-offline", description=__doc__)
    parser.add_argument("command", choices=["create", "delete", "image", "env"])
    parser.add_argument("--name", default=CLUSTER)
    parser.add_argument("--no-build", action="store_true", help="env: only name the paths")
    args = parser.parse_args(argv)
    if args.command == "image":
        print(kind_image.build())
    elif args.command == "env":
        if not args.no_build:
            kube_build.build_all()
            kind_build.build_all()
        print(f"KUBECONFIG={kubeconfig_path(args.name)}")
        print(f"KIND={kind_build.kind_bin() / 'kind'}")
        print(f"KUBECTL={kube_build.kube_bin() / 'kubectl'}")
        print(f"HELM={kube_build.helm_bin() / 'helm'}")
    elif args.command == "create":
        seconds = create(args.name)
        print(f"kind cluster {args.name}: ready ({seconds:.0f}s); KUBECONFIG="
              f"{kubeconfig_path(args.name)}")  # fmt: skip
    else:
        for line in delete(args.name):
            print(f"removed {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
