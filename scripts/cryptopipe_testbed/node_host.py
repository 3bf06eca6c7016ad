"""What the real node changes on the host, recorded so that `down` undoes exactly that.

`up` saves the sysctls the kubelet and the CNI bridge plugin change before anything runs,
creates the node's bridge and the rule that keeps pod traffic on this machine, and writes
each change to a record in the run folder. `down` restores the sysctls, deletes the links and
rules in the record, and unmounts whatever is still mounted under the node's folders. Nothing
else on the host is touched: a link or rule that existed before `up` is never recorded.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptopipe_testbed import process

# The kubelet's kernel tunables (container manager) and the bridge plugin's forwarding switch.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
)


class HostError(process.StartError):
    """A host change failed; the message says which command and why."""


@dataclass
class Record:
    """Every change `up` made, so `down` can undo exactly these."""

    sysctls: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    rules: list[list[str]] = field(default_factory=list)  # iptables argv after -t TABLE -A/-D
    folders: list[str] = field(default_factory=list)  # host folders outside the run folder
    shared_folders: list[str] = field(default_factory=list)  # made shared mount points by `up`

    @classmethod
    def load(cls, path: Path) -> Record:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(**data)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    """Current values of the sysctls that exist on this kernel."""
    values: dict[str, str] = {}
    for name in names:
        path = sysctl_path(name)
        if path.exists():
            values[name] = path.read_text().strip()
    return values


def restore_sysctls(saved: dict[str, str]) -> list[str]:
    """Write back every saved value that changed; the names that were restored."""
    restored = []
    for name, value in read_sysctls(saved).items():
        if value != saved[name]:
            sysctl_path(name).write_text(saved[name] + "\n")
            restored.append(name)
    return restored


def ensure_sysctl(name: str, value: str) -> None:
    """Set a sysctl (saved in the record before, so `down` restores it)."""
    path = sysctl_path(name)
    if not path.exists():
        raise HostError(f"{name} is missing (is the br_netfilter module loaded?)")
    if path.read_text().strip() != value:
        path.write_text(value + "\n")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links() -> set[str]:
    return {path.name for path in Path("/sys/class/net").iterdir()}


def ensure_bridge(record: Record, name: str, address: str) -> None:
    """A port-less bridge holding the node's address (this kernel has no dummy interfaces)."""
    if not link_exists(name):
        _run(["ip", "link", "add", "name", name, "type", "bridge"])
        if name not in record.links:
            record.links.append(name)
    shown = _run(["ip", "-o", "-4", "addr", "show", "dev", name]).stdout
    if f" {address}/" not in shown:
        _run(["ip", "addr", "add", f"{address}/32", "dev", name])
    _run(["ip", "link", "set", name, "up"])


def adopt_link(record: Record, name: str) -> None:
    """A link a plugin made for us (the CNI bridge): `down` deletes it too."""
    if name not in record.links:
        record.links.append(name)


def delete_links(names: Iterable[str]) -> None:
    for name in names:
        if link_exists(name):
            _run(["ip", "link", "delete", name])


def _iptables(table: str, action: str, rule: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return _run(["iptables", "-w", "5", "-t", table, action, *rule], check=False)


def ensure_rule(record: Record, table: str, rule: Sequence[str]) -> None:
    """Append `rule` (chain first) to `table` unless an identical rule is there."""
    entry = [table, *rule]
    if _iptables(table, "-C", rule).returncode != 0:
        inserted = _iptables(table, "-I", rule)
        if inserted.returncode != 0:
            raise HostError(f"iptables -t {table} -I {' '.join(rule)}: {inserted.stderr.strip()}")
    if entry not in record.rules:
        record.rules.append(entry)


def delete_rules(rules: Iterable[Sequence[str]]) -> None:
    for table, *rule in rules:
        while _iptables(table, "-C", rule).returncode == 0:
            _iptables(table, "-D", rule)


def rule_present(table: str, rule: Sequence[str]) -> bool:
    return _iptables(table, "-C", rule).returncode == 0


def remove_chains(
    prefix: str,
    commands: Sequence[str] = ("iptables", "ip6tables"),
    keep: frozenset[str] = frozenset(),
) -> list[str]:
    """Delete every chain whose name starts with `prefix`, except those named in `keep`, and
    the rules that jump to them.

    kube-proxy's `--cleanup` leaves KUBE-FIREWALL (shared with the kubelet) behind; only our
    node uses Kubernetes' chain names on this machine.
    """
    removed = []
    for command in commands:
        dump = _run([f"{command}-save"], check=False).stdout
        table = ""
        jumps: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":" + prefix) and line[1:].split()[0] not in keep:
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and not line.split()[1].startswith(prefix):
                words = shlex.split(line)
                target = words[words.index("-j") + 1] if "-j" in words else ""
                if target.startswith(prefix) and target not in keep:
                    jumps.append((table, ["-D", *words[1:]]))
        for table, rule in jumps:
            _run([command, "-w", "5", "-t", table, *rule], check=False)
        for flag in ("-F", "-X"):
            for table, chain in chains:
                _run([command, "-w", "5", "-t", table, flag, chain], check=False)
        removed += [f"{command} -t {table} {chain}" for table, chain in chains]
    return removed


def _mount_table() -> list[str]:
    """The mount point of every mount in this namespace, in mount order."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4].replace("\\040", " ") for line in lines]


def _at_or_under(point: str, root: str) -> bool:
    return point == root or point.startswith(root + "/")


def mountpoints(prefixes: Iterable[Path]) -> list[str]:
    """Mount points at or under any of `prefixes`, deepest first."""
    roots = [str(prefix) for prefix in prefixes]
    found = {point for point in _mount_table() if any(_at_or_under(point, r) for r in roots)}
    return sorted(found, key=lambda point: point.count("/"), reverse=True)


def unmount_under(prefixes: Iterable[Path]) -> list[str]:
    """Unmount everything at or under `prefixes` (lazily when busy); what was unmounted."""
    points = mountpoints(prefixes)
    for point in points:
        if _run(["umount", point], check=False).returncode != 0:
            _run(["umount", "-l", point], check=False)
    return points


def mount_entries(folder: Path) -> list[str]:
    """Every mount at or under `folder`, one entry per mount: a covered mount and the copy
    covering it are two entries with the same path."""
    return [point for point in _mount_table() if _at_or_under(point, str(folder))]


def is_mount_point(folder: Path) -> bool:
    """From mountinfo: a bind mount of a folder onto itself has the parent's device, so
    `os.path.ismount` misses it."""
    return str(folder) in mount_entries(folder)


def share_namespace_folder(record: Record, folder: Path) -> None:
    """Make `folder` a shared mount point, as `ip netns`, CNI and podman do on first use.

    Done before any pod's network namespace is mounted inside: a tool that upgrades the
    folder later (a recursive bind of it onto itself) would copy those mounts and cover the
    originals, which then can neither be unmounted through the path nor unlinked. On a
    mount point the same tools only set shared propagation, which covers nothing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if is_mount_point(folder):
        return
    if str(folder) not in record.shared_folders:
        record.shared_folders.append(str(folder))
    _run(["mount", "--bind", str(folder), str(folder)])
    _run(["mount", "--make-shared", str(folder)])


def release_namespace_folder(folder: Path, ours: str, unshare: bool) -> list[str]:
    """Unmount and remove the namespaces named `ours*` in `folder`, covered ones included;
    with `unshare`, turn the folder back into a plain folder once nothing is mounted inside.

    A covered mount becomes reachable once the self-bind above it is unmounted; that is done
    only while every mount inside is ours, so another tool's namespaces are never detached.
    The unmounted paths are returned.
    """
    root = str(folder)
    released: list[str] = []

    def inside() -> list[str]:
        return [point for point in mount_entries(folder) if point != root]

    for _ in range(16):  # each pass removes at least one layer
        mine = [point for point in inside() if Path(point).name.startswith(ours)]
        if not mine:
            break
        for point in sorted(set(mine)):
            _run(["umount", point], check=False)
            released.append(point)
        still = [point for point in inside() if Path(point).name.startswith(ours)]
        if still and len(still) == len(mine):  # covered: nothing could be unmounted
            others = [point for point in inside() if not Path(point).name.startswith(ours)]
            if others or not is_mount_point(folder):
                raise HostError(
                    f"cannot unmount {', '.join(sorted(set(still)))}: covered by a mount of "
                    f"{root} that also holds {', '.join(sorted(set(others))) or 'nothing'}"
                )
            _run(["umount", root])
            released.append(root)
    if folder.is_dir():
        for path in folder.glob(f"{ours}*"):
            with contextlib.suppress(OSError):
                path.unlink()
    while unshare and is_mount_point(folder) and not inside():
        _run(["umount", root])
        released.append(root)
    return released


def remove_links_into(folder: Path, target: Path) -> None:
    """Remove the symbolic links in `folder` that point under `target`."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_symlink() and path.readlink().is_relative_to(target):
            path.unlink()


def remove_made_folder(folder: Path, ours: str = "") -> None:
    """Remove the files named `ours*` (every file when `ours` is empty) under a host folder
    `up` made, then the folders left empty (another tool's file keeps its folder)."""
    if not folder.is_dir():
        return
    for path in folder.rglob(f"{ours}*"):
        if path.is_symlink() or not path.is_dir():
            with contextlib.suppress(OSError):  # a busy mount point stays
                path.unlink()
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def remove_empty_cgroups(name: str, root: Path = Path("/sys/fs/cgroup")) -> None:
    """Remove the kubelet's cgroup tree `name` in every hierarchy, leaves first (cgroupfs
    refuses to remove a group with processes, so only empty ones go)."""
    if not root.is_dir():
        return
    for hierarchy in root.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        groups = sorted(
            (path for path in top.rglob("*") if path.is_dir()),
            key=lambda path: len(path.parts),
            reverse=True,
        )
        for group in [*groups, top]:
            with contextlib.suppress(OSError):
                group.rmdir()
