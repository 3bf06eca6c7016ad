"""A kind cluster made offline by the test bed (cryptopipe_testbed.kind_cluster), and what it
may change on the host, so that a test can check `delete` undid all of it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from cryptopipe_testbed import node_host
from cryptopipe_testbed.components import images

# The test bed's own node rewrites these while it runs; they are not the kind cluster's.
TESTBED_MARKS = ("KUBE-", "cryptopipe-testbed", "cptb-")


def _rules(command: str) -> list[str]:
    dump = subprocess.run([command], capture_output=True, text=True, check=True).stdout
    return sorted(
        line
        for line in dump.splitlines()
        if line[:1] in {"-", ":"} and not any(mark in line for mark in TESTBED_MARKS)
        # counters ([packets:bytes]) of chain lines change with traffic
    )


def _chain_names(lines: list[str]) -> list[str]:
    return [line.split()[0] if line.startswith(":") else line for line in lines]


def _testbed_link(name: str) -> bool:
    """The test bed's own bridges, and the pod veths its node plugs into them (its pods come and
    go while the kind lane runs beside the other tests)."""
    if name.startswith(TESTBED_MARKS):
        return True
    master = Path("/sys/class/net", name, "master")
    try:
        return master.resolve(strict=True).name.startswith(TESTBED_MARKS)
    except OSError:  # no master, or the link went away while listed
        return not Path("/sys/class/net", name).exists()


def host_state() -> dict[str, Any]:
    """Links, iptables rules and chains, mounts, sysctls, podman objects and the folders kind
    touches; the test bed node's own entries left out."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    ps = images.podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
    networks = images.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    volumes = images.podman("volume", "ls", "--quiet").stdout.split()
    cni = Path("/etc/cni/net.d")
    return {
        "links": sorted(n for n in node_host.links() if not _testbed_link(n)),
        "iptables": _chain_names(_rules("iptables-save")),
        "ip6tables": _chain_names(_rules("ip6tables-save")),
        "mounts": sorted(
            point
            for point in mounts
            if not point.startswith(("/run/netns/cni-", "/run/containerd", "/tmp/cryptopipe"))
        ),
        "sysctls": node_host.read_sysctls(),
        "containers": sorted(ps),
        "networks": sorted(networks),
        "volumes": sorted(volumes),
        "lib_modules": Path("/lib/modules").exists(),
        "cni_configs": sorted(p.name for p in cni.iterdir()) if cni.is_dir() else [],
        "kubeconfig": (Path.home() / ".kube" / "config").exists(),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"before": before[key], "after": after.get(key)}
        for key in before
        if before[key] != after.get(key)
    }
