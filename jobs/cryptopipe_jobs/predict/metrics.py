"""Prometheus metrics of the predictor; served by the jobs' endpoint (/metrics, /healthz,
/readyz: `http_metrics.serve`).

`cryptopipe_predictor_last_forecast_timestamp_seconds{symbol}` is the event time (the origin
candle's) of the newest forecast Kafka acknowledged: the operator reads it into the pipeline's
`status.lastForecastTime`, as it reads the producer's newest trade time into DataFresh.
`cryptopipe_predictor_serving_info{symbol, model, kind}` names what serves now ("lstm-v0003",
kind "model"; or a baseline's name, kind "baseline").
"""

from __future__ import annotations

import copy

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "cryptopipe_predictor"
# One forecast: features over the kept history, the network (or a baseline's refit), the interval.
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1)


class PredictorMetrics:
    """The predictor's series, labelled by symbol: one registry for every symbol it serves.
    `of(symbol)` is the view a symbol's forecaster records through."""

    def __init__(self, symbol: str = "", registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.symbol = symbol
        self._candles = Counter(
            f"{PREFIX}_candles_consumed",
            "Candle records read from Kafka (final or not, duplicates included).",
            ["symbol"],
            registry=self.registry,
        )
        self._duplicates = Counter(
            f"{PREFIX}_duplicates_dropped",
            "Final candles dropped as already seen (same window_start).",
            ["symbol"],
            registry=self.registry,
        )
        self._forecasts = Counter(
            f"{PREFIX}_forecasts_emitted",
            "Forecast records acknowledged by Kafka (one per horizon step).",
            ["symbol"],
            registry=self.registry,
        )
        self._reloads = Counter(
            f"{PREFIX}_model_reloads",
            "Changes of what serves after the start (a newly promoted version, or a fallback).",
            ["symbol"],
            registry=self.registry,
        )
        self._inference = Histogram(
            f"{PREFIX}_inference_seconds",
            "Wall time of one forecast from the kept history.",
            ["symbol"],
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self._last_forecast = Gauge(
            f"{PREFIX}_last_forecast_timestamp_seconds",
            "Event time of the newest forecast acknowledged by Kafka (Unix time).",
            ["symbol"],
            registry=self.registry,
        )
        self._registry_failures = Counter(
            f"{PREFIX}_registry_read_failures",
            "Reads of the model registry (HDFS or a folder) that failed; serving went on.",
            ["symbol"],
            registry=self.registry,
        )
        self._below_baseline = Gauge(
            f"{PREFIX}_versions_below_baseline",
            "Newest trained versions in a row that did not beat their best baseline.",
            ["symbol"],
            registry=self.registry,
        )
        self._realized = Counter(
            f"{PREFIX}_realized_abs_error",
            "Absolute one-step errors once the target candle closed: the served forecasts' "
            "and persistence's (their ratio over a window is the realized MASE).",
            ["symbol", "forecaster"],
            registry=self.registry,
        )
        self._realized_count = Counter(
            f"{PREFIX}_realized_forecasts",
            "One-step forecasts whose target candle closed.",
            ["symbol"],
            registry=self.registry,
        )
        self._serving = Info(
            f"{PREFIX}_serving",
            "What serves the forecasts: a model version or a baseline.",
            ["symbol"],
            registry=self.registry,
        )
        if symbol:
            self._zero_series()

    def _zero_series(self) -> None:
        """Zero-valued series from the start, so a scrape shows them before the first event."""
        for counter in (
            self._candles,
            self._duplicates,
            self._forecasts,
            self._reloads,
            self._registry_failures,
        ):
            counter.labels(self.symbol)

    def of(self, symbol: str) -> PredictorMetrics:
        """The same series, recorded for `symbol`."""
        view = copy.copy(self)
        view.symbol = symbol
        view._zero_series()
        return view

    def candle_consumed(self) -> None:
        self._candles.labels(self.symbol).inc()

    def duplicate_dropped(self) -> None:
        self._duplicates.labels(self.symbol).inc()

    def inference(self, seconds: float) -> None:
        self._inference.labels(self.symbol).observe(seconds)

    def forecasts_emitted(self, count: int, event_time: float) -> None:
        self._forecasts.labels(self.symbol).inc(count)
        self._last_forecast.labels(self.symbol).set(event_time)

    def realized(self, served_error: float, persistence_error: float) -> None:
        self._realized.labels(self.symbol, "served").inc(served_error)
        self._realized.labels(self.symbol, "persistence").inc(persistence_error)
        self._realized_count.labels(self.symbol).inc()

    def registry_read_failed(self) -> None:
        self._registry_failures.labels(self.symbol).inc()

    def versions_below_baseline(self, streak: int) -> None:
        self._below_baseline.labels(self.symbol).set(streak)

    def serving(self, model: str, kind: str, reload: bool) -> None:
        self._serving.labels(self.symbol).info({"model": model, "kind": kind})
        if reload:
            self._reloads.labels(self.symbol).inc()
