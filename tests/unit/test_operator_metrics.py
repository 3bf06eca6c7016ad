"""The operator's metrics endpoint, served for real: prometheus-client's exposition of the
reconcile counters, the API client's counts read at scrape time, and the two probes."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from node_support import metric

from cryptopipe_operator.metrics import Metrics, serve

pytestmark = pytest.mark.unit


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str, dict[str, bool]]]:
    metrics = Metrics()
    probes = {"alive": True, "ready": False}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve(port, metrics, lambda: probes["alive"], lambda: probes["ready"])
    yield metrics, f"http://127.0.0.1:{port}", probes
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_counters_follow_prometheus_conventions_and_read_the_client_at_scrape_time(
    served: tuple[Metrics, str, dict[str, bool]],
) -> None:
    metrics, address, _ = served
    writes = [3]
    metrics.writes = lambda: writes[0]
    metrics.requests = lambda: {"get": 5, "patch": 2}
    metrics.observe(0.2, "applied")
    metrics.observe(0.3, "error")
    metrics.set_leader(True)
    status, text = _get(f"{address}/metrics")
    assert status == 200
    assert metric(text, 'cryptopipe_operator_reconciles_total{outcome="applied"}') == 1.0
    assert metric(text, "cryptopipe_operator_reconcile_errors_total") == 1.0
    assert metric(text, "cryptopipe_operator_reconcile_duration_seconds_count") == 2.0
    assert metric(text, 'cryptopipe_operator_reconcile_duration_seconds_bucket{le="0.25"}') == 1.0
    assert metric(text, 'cryptopipe_operator_api_requests_total{verb="patch"}') == 2.0
    assert metric(text, "cryptopipe_operator_leader") == 1.0
    assert metric(text, "cryptopipe_operator_writes_total") == 3.0
    writes[0] = 8
    assert metric(_get(f"{address}/metrics")[1], "cryptopipe_operator_writes_total") == 8.0
    assert "# TYPE cryptopipe_operator_reconciles_total counter" in text


def test_probes_answer_503_until_their_check_passes(
    served: tuple[Metrics, str, dict[str, bool]],
) -> None:
    _, address, probes = served
    assert _get(f"{address}/healthz") == (200, "ok\n")
    assert _get(f"{address}/readyz") == (503, "not ready\n")
    probes["ready"] = True
    assert _get(f"{address}/readyz") == (200, "ok\n")
