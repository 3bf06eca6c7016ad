"""A real Prometheus server (the test bed's build) for one test module: it discovers the test bed
node's pods through the API server as a cluster's Prometheus does from `prometheus.io`
annotations, evaluates the chart's alert rules, and answers its HTTP API."""

from __future__ import annotations

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


def annotated_endpoints_job(kubeconfig: Path, namespaces: list[str]) -> dict[str, Any]:
    """The usual `kubernetes-service-endpoints` job: every Service annotated
    `prometheus.io/scrape: "true"`, scraped at each ready endpoint (a pod's IP) on the annotated
    port and path, labelled with the pod's namespace and name."""
    return {
        "job_name": "kubernetes-service-endpoints",
        "kubernetes_sd_configs": [
            {
                "role": "endpoints",
                "kubeconfig_file": str(kubeconfig),
                "namespaces": {"names": namespaces},
            }
        ],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            {
                "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_path"],
                "target_label": "__metrics_path__",
                "regex": "(.+)",
            },
            {
                "source_labels": [
                    "__address__",
                    "__meta_kubernetes_service_annotation_prometheus_io_port",
                ],
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


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
