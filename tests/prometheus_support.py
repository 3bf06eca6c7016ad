"""A real Prometheus server (the test bed's build) for one test module: it discovers the test bed
node's pods through the API server as a cluster's Prometheus does from `prometheus.io`
annotations, evaluates the chart's alert rules, and answers its HTTP API."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from net_support import free_port

from cryptopipe_testbed import prometheus


@dataclass(frozen=True)
class ApiProxy:
    """Scrape each pod through the API server's pod proxy, as the kubeconfig's user: on kind
    the pods' addresses are not routed from the host, the API server's port is."""

    address: str  # host:port
    tls_config: dict[str, str]

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, folder: Path) -> ApiProxy:
        config = yaml.safe_load(kubeconfig.read_text())
        (cluster,) = config["clusters"]
        (user,) = config["users"]
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "ca_file": ("ca.crt", cluster["cluster"]["certificate-authority-data"]),
            "cert_file": ("client.crt", user["user"]["client-certificate-data"]),
            "key_file": ("client.key", user["user"]["client-key-data"]),
        }
        tls = {}
        for option, (name, data) in files.items():
            path = folder / name
            path.write_bytes(base64.b64decode(data))
            path.chmod(0o600)
            tls[option] = str(path)
        address = urllib.parse.urlsplit(cluster["cluster"]["server"]).netloc
        return cls(address, tls)


def _scrape_rules(kind: str, proxy: ApiProxy | None) -> list[dict[str, Any]]:
    """Keep what `prometheus.io/scrape` marks; scrape its `port` and `path` (default /metrics)
    at the pod, or through the API server's proxy for it; label the pod's namespace and name."""
    annotation = f"__meta_kubernetes_{kind}_annotation_prometheus_io_"
    rules: list[dict[str, Any]] = [
        {"source_labels": [f"{annotation}scrape"], "action": "keep", "regex": "true"},
        {
            "source_labels": [f"{annotation}path"],
            "target_label": "__metrics_path__",
            "regex": "(.+)",
        },
    ]
    if proxy is None:
        rules.append(
            {
                "source_labels": ["__address__", f"{annotation}port"],
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            }
        )
    else:
        rules += [
            {
                "source_labels": [
                    "__meta_kubernetes_namespace",
                    "__meta_kubernetes_pod_name",
                    f"{annotation}port",
                    "__metrics_path__",
                ],
                "regex": r"(.+);(.+);(\d+);(.*)",
                "replacement": "/api/v1/namespaces/$1/pods/$2:$3/proxy$4",
                "target_label": "__metrics_path__",
            },
            {"target_label": "__address__", "replacement": proxy.address},
        ]
    return [
        *rules,
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]


def _job(
    name: str, role: str, kubeconfig: Path, namespaces: list[str], proxy: ApiProxy | None
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": name,
        "kubernetes_sd_configs": [
            {"role": role, "kubeconfig_file": str(kubeconfig), "namespaces": {"names": namespaces}}
        ],
        "relabel_configs": _scrape_rules("service" if role == "endpoints" else "pod", proxy),
    }
    if proxy is not None:
        job |= {"scheme": "https", "tls_config": proxy.tls_config}
    return job


def annotated_endpoints_job(
    kubeconfig: Path, namespaces: list[str], proxy: ApiProxy | None = None
) -> dict[str, Any]:
    """The usual `kubernetes-service-endpoints` job: every Service annotated
    `prometheus.io/scrape: "true"`, scraped at each ready endpoint (a pod's IP) on the annotated
    port and path, labelled with the pod's namespace and name."""
    return _job("kubernetes-service-endpoints", "endpoints", kubeconfig, namespaces, proxy)


def annotated_pods_job(
    kubeconfig: Path, namespaces: list[str], proxy: ApiProxy | None = None
) -> dict[str, Any]:
    """The usual `kubernetes-pods` job: every pod annotated `prometheus.io/scrape: "true"`
    (the Spark driver's own metrics port)."""
    return _job("kubernetes-pods", "pod", kubeconfig, namespaces, proxy)


@dataclass
class Prometheus:
    url: str
    log: Path

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/v1/query", query=expr)["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self._get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def series(self, selector: str) -> list[dict[str, str]]:
        """The label sets of the series `selector` matches now (a sample in the last 5 m)."""
        return [result["metric"] for result in self.query(selector)]

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        alerts = self._get("/api/v1/alerts")["alerts"]
        return [
            a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets")["activeTargets"]
        return active

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_prometheus(
    folder: Path,
    scrape_configs: list[dict[str, Any]],
    rules: str,
    interval: str = "2s",
) -> Iterator[Prometheus]:
    """Prometheus scraping and evaluating every `interval`, with `rules` (a rule file's text)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alerts.yaml").write_text(rules)
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(folder / "alerts.yaml")],
        "scrape_configs": scrape_configs,
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    argv = [
        str(prometheus.prometheus_path()),
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = f"{server.url}/-/ready"
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as answer:
                if answer.status == 200:
                    break
            assert process.poll() is None, f"prometheus exited:\n{server.tail()}"
            assert time.monotonic() < deadline, f"prometheus not ready:\n{server.tail()}"
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
