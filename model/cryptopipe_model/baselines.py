"""Baselines, always evaluated beside the model; the same fit/predict interface.

All rules forecast the cumulative log return from the origin's close, then become prices:
- persistence: the last close, for every step (a random walk without drift);
- drift: random walk with drift, mu = mean log return over the training window, step k -> k*mu;
- ema: the exponential moving average of closes at the origin (alpha = 2 / (span + 1),
  started at the first close of the history), flat over the horizon;
- ar: AR(p) on one-step log returns with intercept, fitted by least squares on the training
  window, iterated forward for multi-step forecasts.
Intervals: per-step quantiles of the rule's residuals over the training window, each divided by
the volatility at its origin, scaled by the volatility at the forecast origin (`ResidualBands`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptopipe_model.features import FloatArray, IntArray, future_log_returns
from cryptopipe_model.forecast import Forecast, Model, ResidualBands, to_prices
from cryptopipe_model.volatility import ewma_volatility

PointRule = Callable[[FloatArray, IntArray], FloatArray]

BASELINE_NAMES = ("persistence", "drift", "ema", "ar")


@dataclass(frozen=True)
class BaselinePredictor:
    """A fitted baseline: its rule (log close, origins) -> (n, horizon) log returns, and bands."""

    name: str
    horizon: int
    rows_needed: int
    rule: PointRule = field(repr=False)
    bands: ResidualBands
    params: dict[str, float] = field(default_factory=dict)

    def min_history(self) -> int:
        return max(self.rows_needed, self.bands.min_history())

    def log_point(self, candles: pd.DataFrame, origins: IntArray) -> FloatArray:
        log_close = np.log(candles["close"].to_numpy(dtype=float))
        origins = np.asarray(origins, dtype=np.int64)
        if len(origins) and origins.min() < self.min_history() - 1:
            raise ValueError(f"{self.name} needs {self.min_history()} rows before an origin")
        return self.rule(log_close, origins)

    def predict(self, candles: pd.DataFrame, origins: IntArray) -> Forecast:
        origins = np.asarray(origins, dtype=np.int64)
        log_point = self.log_point(candles, origins)
        return to_prices(candles["close"].to_numpy(dtype=float), origins, log_point, self.bands)


def _fit_bands(
    rule: PointRule, log_close: FloatArray, rows_needed: int, horizon: int, coverage: float
) -> ResidualBands:
    origins = np.arange(rows_needed - 1, len(log_close) - horizon, dtype=np.int64)
    if len(origins) == 0:
        raise ValueError(f"training window too short: {len(log_close)} rows")
    close = np.exp(log_close)
    actual = future_log_returns(close, origins, horizon)
    volatility = ewma_volatility(close)[origins]
    return ResidualBands.fit_scaled(actual - rule(log_close, origins), volatility, coverage)


def _train_log_close(train: pd.DataFrame) -> FloatArray:
    return np.log(np.asarray(train["close"].to_numpy(dtype=float), dtype=np.float64))


@dataclass(frozen=True)
class Persistence:
    horizon: int
    coverage: float
    name: str = "persistence"

    def rule(self) -> PointRule:
        def point(log_close: FloatArray, origins: IntArray) -> FloatArray:
            return np.zeros((len(origins), self.horizon))

        return point

    def fit(self, train: pd.DataFrame) -> BaselinePredictor:
        rule = self.rule()
        bands = _fit_bands(rule, _train_log_close(train), 1, self.horizon, self.coverage)
        return BaselinePredictor(self.name, self.horizon, 1, rule, bands)


@dataclass(frozen=True)
class Drift:
    horizon: int
    coverage: float
    name: str = "drift"

    def fit(self, train: pd.DataFrame) -> BaselinePredictor:
        log_close = _train_log_close(train)
        if len(log_close) < 2:
            raise ValueError("drift needs at least two training rows")
        mu = float((log_close[-1] - log_close[0]) / (len(log_close) - 1))
        steps = np.arange(1, self.horizon + 1, dtype=float)

        def rule(log_close: FloatArray, origins: IntArray) -> FloatArray:
            return np.tile(mu * steps, (len(origins), 1))

        bands = _fit_bands(rule, log_close, 1, self.horizon, self.coverage)
        return BaselinePredictor(self.name, self.horizon, 1, rule, bands, {"mu": mu})


def ema(values: FloatArray, span: float) -> FloatArray:
    """e[0] = v[0]; e[t] = a * v[t] + (1 - a) * e[t-1], a = 2 / (span + 1)."""
    series = pd.Series(np.asarray(values, dtype=float))
    return np.asarray(series.ewm(span=span, adjust=False).mean().to_numpy(), dtype=np.float64)


@dataclass(frozen=True)
class Ema:
    horizon: int
    coverage: float
    span: float = 12.0
    name: str = "ema"

    def rule(self) -> PointRule:
        def point(log_close: FloatArray, origins: IntArray) -> FloatArray:
            smoothed = ema(np.exp(log_close), self.span)
            level = np.log(smoothed[origins]) - log_close[origins]
            return np.tile(level[:, None], (1, self.horizon))

        return point

    def fit(self, train: pd.DataFrame) -> BaselinePredictor:
        rule = self.rule()
        bands = _fit_bands(rule, _train_log_close(train), 1, self.horizon, self.coverage)
        return BaselinePredictor(self.name, self.horizon, 1, rule, bands, {"span": self.span})


def fit_ar(returns: FloatArray, p: int) -> FloatArray:
    """Least-squares AR(p) with intercept: coefficients (c, phi_1, ..., phi_p)."""
    returns = np.asarray(returns, dtype=float)
    if len(returns) <= 2 * p + 1:
        raise ValueError(f"AR({p}) needs more than {2 * p + 1} returns, got {len(returns)}")
    lags = np.column_stack([returns[p - i : len(returns) - i] for i in range(1, p + 1)])
    design = np.column_stack([np.ones(len(lags)), lags])
    coefficients, *_ = np.linalg.lstsq(design, returns[p:], rcond=None)
    return np.asarray(coefficients, dtype=np.float64)


def ar_forecast(coefficients: FloatArray, recent: FloatArray, horizon: int) -> FloatArray:
    """Iterated forecasts: recent is (n, p) with the latest return last; -> (n, horizon)."""
    p = len(coefficients) - 1
    state = np.array(recent, dtype=float, copy=True)
    out = np.empty((len(state), horizon))
    for k in range(horizon):
        # phi_1 multiplies the latest return, which is the last column of state.
        nxt = coefficients[0] + state[:, ::-1][:, :p] @ coefficients[1:]
        out[:, k] = nxt
        state = np.column_stack([state[:, 1:], nxt]) if p > 1 else nxt[:, None]
    return out


@dataclass(frozen=True)
class Ar:
    horizon: int
    coverage: float
    p: int = 3
    name: str = "ar"

    def fit(self, train: pd.DataFrame) -> BaselinePredictor:
        log_close = _train_log_close(train)
        coefficients = fit_ar(np.diff(log_close), self.p)
        p = self.p

        def rule(log_close: FloatArray, origins: IntArray) -> FloatArray:
            returns = np.diff(log_close)
            # Return i is log_close[i+1] - log_close[i]; the last p returns up to origin o are
            # returns[o-p .. o-1].
            recent = returns[origins[:, None] - p + np.arange(p)[None, :]]
            return np.cumsum(ar_forecast(coefficients, recent, self.horizon), axis=1)

        bands = _fit_bands(rule, log_close, p + 1, self.horizon, self.coverage)
        params = {"c": float(coefficients[0])}
        params.update({f"phi_{i}": float(v) for i, v in enumerate(coefficients[1:], start=1)})
        return BaselinePredictor(self.name, self.horizon, p + 1, rule, bands, params)


def make_baseline(name: str, horizon: int, coverage: float) -> Model:
    """A baseline by name, with default settings."""
    models: dict[str, Model] = {
        "persistence": Persistence(horizon, coverage),
        "drift": Drift(horizon, coverage),
        "ema": Ema(horizon, coverage),
        "ar": Ar(horizon, coverage),
    }
    if name not in models:
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINE_NAMES)})")
    return models[name]


def all_baselines(horizon: int, coverage: float) -> list[Model]:
    return [make_baseline(name, horizon, coverage) for name in BASELINE_NAMES]
