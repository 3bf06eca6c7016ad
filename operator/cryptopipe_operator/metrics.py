"""Prometheus metrics (text exposition) and the health endpoints, served from one thread."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reconciles: defaultdict[str, int] = defaultdict(int)  # by outcome
        self.errors = 0
        self._buckets = [0] * len(BUCKETS)
        self._count = 0
        self._sum = 0.0
        self.requests: Callable[[], dict[str, int]] = dict
        # Read from the API client at render time: reconciles run in parallel, so summing
        # per-reconcile differences of a shared counter would count others' writes too.
        self.writes: Callable[[], int] = lambda: 0
        self.leader = False

    def observe(self, seconds: float, outcome: str) -> None:
        with self._lock:
            self.reconciles[outcome] += 1
            if outcome == "error":
                self.errors += 1
            self._count += 1
            self._sum += seconds
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self._buckets[index] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP cryptopipe_operator_reconciles_total Reconciles by outcome.",
                "# TYPE cryptopipe_operator_reconciles_total counter",
                *(
                    f'cryptopipe_operator_reconciles_total{{outcome="{k}"}} {v}'
                    for k, v in sorted(self.reconciles.items())
                ),
                "# HELP cryptopipe_operator_reconcile_errors_total Reconciles that raised.",
                "# TYPE cryptopipe_operator_reconcile_errors_total counter",
                f"cryptopipe_operator_reconcile_errors_total {self.errors}",
                "# HELP cryptopipe_operator_writes_total Writes to children and status.",
                "# TYPE cryptopipe_operator_writes_total counter",
                f"cryptopipe_operator_writes_total {self.writes()}",
                "# HELP cryptopipe_operator_reconcile_duration_seconds Time per reconcile.",
                "# TYPE cryptopipe_operator_reconcile_duration_seconds histogram",
            ]
            cumulative = 0
            for bound, count in zip(BUCKETS, self._buckets, strict=True):
                cumulative = count
                lines.append(
                    f'cryptopipe_operator_reconcile_duration_seconds_bucket{{le="{bound}"}} '
                    f"{cumulative}"
                )
            lines += [
                f'cryptopipe_operator_reconcile_duration_seconds_bucket{{le="+Inf"}} {self._count}',
                f"cryptopipe_operator_reconcile_duration_seconds_sum {self._sum:.6f}",
                f"cryptopipe_operator_reconcile_duration_seconds_count {self._count}",
                "# HELP cryptopipe_operator_api_requests_total API requests by verb.",
                "# TYPE cryptopipe_operator_api_requests_total counter",
                *(
                    f'cryptopipe_operator_api_requests_total{{verb="{k}"}} {v}'
                    for k, v in sorted(self.requests().items())
                ),
                "# HELP cryptopipe_operator_leader Whether this replica holds the Lease.",
                "# TYPE cryptopipe_operator_leader gauge",
                f"cryptopipe_operator_leader {int(self.leader)}",
            ]
        return "\n".join(lines) + "\n"


def serve(
    port: int, metrics: Metrics, alive: Callable[[], bool], ready: Callable[[], bool]
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, metrics.render(), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                ok = alive()
                self._answer(200 if ok else 503, "ok\n" if ok else "unhealthy\n")
            elif self.path == "/readyz":
                ok = ready()
                self._answer(200 if ok else 503, "ok\n" if ok else "not ready\n")
            else:
                self._answer(404, "not found\n")

        def _answer(self, code: int, text: str, kind: str = "text/plain") -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - a pod's port
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
