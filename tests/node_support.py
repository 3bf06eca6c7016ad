"""kubectl, waiting and port-forward helpers for tests against the test bed's real node, or,
inside `against(kubeconfig)`, against another cluster (a kind cluster)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptopipe_testbed.components import kube

_targets: list[Path] = []


def kubeconfig() -> Path:
    """The kubeconfig every helper here uses: the test bed's admin, unless inside `against`."""
    return _targets[-1] if _targets else kube.admin_kubeconfig()


@contextlib.contextmanager
def against(config: Path) -> Iterator[None]:
    """Point kubectl, get, port_forward and helm at the cluster of `config` until the end."""
    _targets.append(config)
    try:
        yield
    finally:
        _targets.pop()


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = kube.kubectl(*args, kubeconfig=kubeconfig(), stdin=stdin, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def restricted_namespace(name: str) -> str:
    """A Namespace under Pod Security's restricted profile, enforced by the API server's
    admission, as scripts/cluster makes the platform's: kubectl apply -f - it."""
    labels = "".join(
        f"    pod-security.kubernetes.io/{mode}: restricted\n" for mode in ("enforce", "warn")
    )
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n{labels}"


def get(*args: str) -> Any:
    """`kubectl get ... -o json`, or None when it fails (for example: not found)."""
    result = kube.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig(), timeout=60)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """The first truthy value of `check`, polled every half second."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def metric(text: str, name: str) -> float | None:
    """One sample of a Prometheus text exposition; `name` includes any labels."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@contextlib.contextmanager
def port_forward(namespace: str, target: str, port: int) -> Iterator[int]:
    """`kubectl port-forward TARGET :PORT` (API server -> kubelet -> the pod); the local port."""
    argv = [str(kube.kubectl_path()), f"--kubeconfig={kubeconfig()}"]
    argv += [f"--namespace={namespace}", "port-forward", target, f":{port}"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as fwd:
        try:
            assert fwd.stdout is not None
            first = fwd.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> port
            assert "127.0.0.1:" in first, f"port-forward said {first!r}"
            yield int(first.split("127.0.0.1:")[1].split()[0])
        finally:
            fwd.terminate()


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return str(answer.read().decode())


def helm(
    home: Path, namespace: str, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """helm against the test bed (or `against`'s cluster), with its cache and config under
    `home` (not the user's)."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig()),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    argv = [str(kube.helm_path()), *args, f"--namespace={namespace}"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
