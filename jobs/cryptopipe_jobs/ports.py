"""The ports our processes listen on: whether one is free, and who holds it when it is not."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

LISTEN = "0A"  # the TCP state column of /proc/net/tcp


class PortInUse(OSError):
    """A port one of our processes needs is taken; the message names the holder and the flag."""

    def __init__(self, port: int, flag: str, holder: str | None) -> None:
        self.port = port
        super().__init__(
            f"port {port} is in use by {holder or 'another process'}; "
            f"stop it or choose another port with {flag}"
        )


def _listening_inodes(port: int, tables: tuple[Path, ...]) -> set[str]:
    inodes = set()
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == LISTEN:
                inodes.add(fields[9])
    return inodes


def holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`pid N (command line)` of the process listening on `port`, when /proc shows it."""
    inodes = _listening_inodes(port, (proc / "net" / "tcp", proc / "net" / "tcp6"))
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in wanted for fd in (entry / "fd").iterdir()):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                return f"pid {entry.name} ({command.strip()[:120]})"
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return None


def ensure_free(port: int, flag: str, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Raise PortInUse unless a server could listen on `host`:`port` now (port 0: no server)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(port, flag, holder(port)) from None
