"""The operator's Prometheus metrics (prometheus-client) and its health endpoints, served
from one thread on the metrics port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ApiClientCollector(Collector):
    """Counts kept by the API client, read at scrape time: reconciles run in parallel, so
    summing per-reconcile differences of a shared counter would count others' writes too."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        writes = CounterMetricFamily("cryptopipe_operator_writes", "Writes to children and status.")
        writes.add_metric([], self._metrics.writes())
        yield writes
        requests = CounterMetricFamily(
            "cryptopipe_operator_api_requests", "API requests by verb.", labels=["verb"]
        )
        for verb, count in sorted(self._metrics.requests().items()):
            requests.add_metric([verb], count)
        yield requests


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._reconciles = Counter(
            "cryptopipe_operator_reconciles",
            "Reconciles by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self._errors = Counter(
            "cryptopipe_operator_reconcile_errors",
            "Reconciles that raised.",
            registry=self.registry,
        )
        self._duration = Histogram(
            "cryptopipe_operator_reconcile_duration_seconds",
            "Time per reconcile.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._leader = Gauge(
            "cryptopipe_operator_leader",
            "Whether this replica holds the Lease.",
            registry=self.registry,
        )
        self.requests: Callable[[], dict[str, int]] = dict
        self.writes: Callable[[], int] = lambda: 0
        self.registry.register(_ApiClientCollector(self))

    def set_leader(self, leading: bool) -> None:
        self._leader.set(int(leading))

    def observe(self, seconds: float, outcome: str) -> None:
        self._reconciles.labels(outcome).inc()
        if outcome == "error":
            self._errors.inc()
        self._duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(
    port: int, metrics: Metrics, alive: Callable[[], bool], ready: Callable[[], bool]
) -> ThreadingHTTPServer:
    """prometheus-client's exposition handler, plus /healthz and /readyz for the probes."""
    probes = {
        "/healthz": (alive, b"ok\n", b"unhealthy\n"),
        "/readyz": (ready, b"ok\n", b"not ready\n"),
    }

    class Handler(MetricsHandler.factory(metrics.registry)):  # type: ignore[misc]
        def do_GET(self) -> None:
            if self.path not in probes:
                super().do_GET()
                return
            check, good, bad = probes[self.path]
            ok = check()
            body = good if ok else bad
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - a pod's port
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
