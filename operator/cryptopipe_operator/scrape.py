"""Children's Prometheus metrics, read through the API server's service proxy.

The operator learns two things this way: the exchange time of the producer's newest trade
(DataFresh) and the event time of the predictor's newest forecast (`status.lastForecastTime`).
Parsing is pure; `read_metrics` is the one request.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cryptopipe_operator.kube import Kube

NEWEST_TRADE = "cryptopipe_producer_last_event_timestamp_seconds"
LAST_FORECAST = "cryptopipe_predictor_last_forecast_timestamp_seconds"
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_SYMBOL = re.compile(r'(?:^|,)\s*symbol="(?P<symbol>[^"]*)"')


def symbol_sample(metrics_text: str, metric: str, symbol: str) -> float | None:
    """The value of `metric{symbol=...}` for this symbol (case-insensitive), if reported."""
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group("name") != metric:
            continue
        label = _SYMBOL.search(match.group("labels"))
        if label is not None and label.group("symbol").upper() == symbol.upper():
            try:
                return float(match.group("value"))
            except ValueError:
                return None
    return None


def newest_trade_age(metrics_text: str, symbol: str, at: float) -> float | None:
    """Age in seconds of the newest trade the producer's metrics report for `symbol`."""
    value = newest_trade_timestamp(metrics_text, symbol)
    return max(0.0, at - value) if value is not None else None


def newest_trade_timestamp(metrics_text: str, symbol: str) -> float | None:
    """Unix time of the newest trade the producer's metrics report for `symbol`."""
    value = symbol_sample(metrics_text, NEWEST_TRADE, symbol)
    return value if value is not None and value > 0 else None


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_forecast_time(metrics_text: str, symbol: str) -> str | None:
    """RFC 3339 UTC time (seconds) of the newest forecast the predictor's metrics report."""
    value = symbol_sample(metrics_text, LAST_FORECAST, symbol)
    if value is None or not value > 0:
        return None
    return rfc3339(value)


def read_metrics(kube: Kube, namespace: str, service: str, timeout: float) -> str:
    """GET /metrics of a Service's port named `metrics`, through the API server's proxy."""
    path = f"/api/v1/namespaces/{namespace}/services/{service}:metrics/proxy/metrics"
    text = kube.request("GET", path, timeout=timeout, raw=True)
    return str(text)
