"""Start, watch and stop the test bed's long-running processes.

Each daemon runs in its own session (so `down` can stop its whole process group), writes its
output to `<run>/logs/<name>.log`, and is found again through `<run>/pids/<name>.pid`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptopipe_testbed import paths


class StartError(RuntimeError):
    """A component did not become healthy; the message carries its log tail."""


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM


def log_path(name: str) -> Path:
    return paths.log_dir() / f"{name}.log"


def pid_path(name: str) -> Path:
    return paths.pid_dir() / f"{name}.pid"


def read_pid(name: str) -> int | None:
    try:
        return int(pid_path(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def running_pid(name: str) -> int | None:
    pid = read_pid(name)
    return pid if pid is not None and _alive(pid) else None


def start(daemon: Daemon) -> int:
    """Start a daemon unless it already runs; return its pid."""
    existing = running_pid(daemon.name)
    if existing is not None:
        return existing
    env = {**os.environ, **daemon.env}
    with open(log_path(daemon.name), "wb") as log:
        proc = subprocess.Popen(
            list(daemon.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=daemon.cwd,
            env=env,
            start_new_session=True,
            user=daemon.user,
        )
    pid_path(daemon.name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(name: str, stop_signal: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
    """Stop a daemon and everything in its process group; True if something was running."""
    pid = read_pid(name)
    pid_path(name).unlink(missing_ok=True)
    if pid is None or not _alive(pid):
        return False
    try:
        if stop_signal == signal.SIGTERM:
            os.killpg(pid, signal.SIGTERM)
        else:  # a daemon with its own shutdown signal (PostgreSQL's fast shutdown) gets it alone
            os.kill(pid, stop_signal)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def log_tail(name: str, lines: int = 40) -> str:
    try:
        text = log_path(name).read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log_path(name)})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool], *, what: str, logs: Sequence[str], timeout: float = 120.0
) -> None:
    """Poll `check` until it is true; on timeout or a dead daemon raise with the log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [name for name in logs if running_pid(name) is None]
        if dead:
            raise StartError(_failure(f"{what}: process {', '.join(dead)} exited", logs))
        time.sleep(0.5)
    raise StartError(_failure(f"{what}: not healthy after {timeout:.0f}s", logs))


def _failure(headline: str, logs: Sequence[str]) -> str:
    parts = [headline]
    for name in logs:
        parts.append(f"--- last lines of {log_path(name)} ---\n{log_tail(name)}")
    return "\n".join(parts)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 3.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def run(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> None:
    """Run a one-off command (install or init step) with its output in `log`; raise on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            user=user,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise StartError(f"{argv[0]} failed with exit code {result.returncode}:\n{tail}")
