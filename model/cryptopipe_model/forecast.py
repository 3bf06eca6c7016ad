"""What every forecaster (the LSTM and each baseline) shares: the Forecast it returns, the
two-step interface (fit on a training frame, then predict from any history), and intervals
calibrated from residuals.

Interval method, shared by all forecasters: volatility-scaled residual quantiles. A residual
(actual - point, in log-return space, per horizon step) is divided by the volatility known at
its origin (`volatility.ewma_volatility`); the empirical quantiles of these normalized
residuals at (1 - coverage) / 2 and (1 + coverage) / 2 are taken per step, and at forecast time
they are multiplied by the volatility at the new origin and added to the point forecast. Price
volatility clusters: a calm calibration period followed by a turbulent one (or the reverse)
makes plain residual quantiles too narrow (too wide) for months, while normalized residuals
keep one distribution (bench/model.py on the bundled BTC/USD hours, nominal 0.90: the LSTM
covered 0.860 with plain residuals, 0.894 scaled). Plain quantiles
(`ResidualBands.fit`) remain for comparison and for versions saved before scaling existed.

The bounds are widened to include zero so that lower <= point <= upper always holds (a biased
residual distribution would otherwise put the point outside its interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cryptopipe_model.features import FloatArray, IntArray
from cryptopipe_model.volatility import VOLATILITY_HALFLIFE, ewma_volatility


@dataclass(frozen=True)
class Forecast:
    """Prices, each (n_origins, horizon): point forecast and interval bounds."""

    point: FloatArray
    lower: FloatArray
    upper: FloatArray

    @property
    def horizon(self) -> int:
        return int(self.point.shape[1])


class Predictor(Protocol):
    """A fitted forecaster."""

    @property
    def name(self) -> str: ...

    def min_history(self) -> int:
        """Rows a history needs before the first origin it can forecast from."""
        ...

    def predict(self, candles: pd.DataFrame, origins: IntArray) -> Forecast:
        """Forecasts from each origin (a row position in `candles`), using rows <= origin only."""
        ...


class Model(Protocol):
    """An unfitted forecaster: configuration plus `fit`."""

    @property
    def name(self) -> str: ...

    def fit(self, train: pd.DataFrame) -> Predictor: ...


def _quantiles(values: FloatArray, coverage: float) -> tuple[FloatArray, FloatArray]:
    """Per-column (lower, upper) quantiles, widened to include zero."""
    n = len(values)
    if n == 0:
        raise ValueError("no residuals to calibrate intervals on")
    tail = (1.0 - coverage) / 2.0
    # Split-conformal style finite-sample correction: the ceil((n+1)q)/n-th order statistic.
    hi_q = min(math.ceil((n + 1) * (1.0 - tail)) / n, 1.0)
    lo_q = max(1.0 - hi_q, 0.0)
    lower = np.minimum(np.quantile(values, lo_q, axis=0), 0.0)
    upper = np.maximum(np.quantile(values, hi_q, axis=0), 0.0)
    return lower, upper


@dataclass(frozen=True)
class ResidualBands:
    """Per-step quantiles, shape (horizon,) each, of log residuals (actual - point): divided by
    the origin's volatility when `halflife` is set (its EWMA half-life in rows), plain if None."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    halflife: float | None = None

    @classmethod
    def fit(cls, residuals: FloatArray, coverage: float) -> ResidualBands:
        """Plain quantiles of the residuals (n, horizon)."""
        lower, upper = _quantiles(np.asarray(residuals, dtype=float), coverage)
        return cls(tuple(float(v) for v in lower), tuple(float(v) for v in upper))

    @classmethod
    def fit_scaled(
        cls,
        residuals: FloatArray,
        volatility: FloatArray,
        coverage: float,
        halflife: float = VOLATILITY_HALFLIFE,
    ) -> ResidualBands:
        """Quantiles of residuals (n, horizon) divided by the volatility (n,) at their origins;
        origins whose volatility is undefined or zero are left out."""
        volatility = np.asarray(volatility, dtype=float)
        usable = np.isfinite(volatility) & (volatility > 0)
        normalized = np.asarray(residuals, dtype=float)[usable] / volatility[usable, None]
        lower, upper = _quantiles(normalized, coverage)
        return cls(tuple(float(v) for v in lower), tuple(float(v) for v in upper), halflife)

    def min_history(self) -> int:
        """Rows up to an origin that its interval needs (scaled: one return)."""
        return 1 if self.halflife is None else 2

    def scale(self, close: FloatArray, origins: IntArray) -> FloatArray:
        """(n,) what the quantiles are multiplied by at each origin: its volatility, or 1."""
        if self.halflife is None:
            return np.ones(len(origins))
        if len(origins) == 0:
            return np.zeros(0)
        # The estimate at an origin uses rows <= origin only; later rows are not needed.
        volatility = ewma_volatility(np.asarray(close)[: int(np.max(origins)) + 1], self.halflife)
        return np.asarray(volatility[origins], dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"lower": list(self.lower), "upper": list(self.upper), "halflife": self.halflife}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResidualBands:
        halflife = data.get("halflife")
        return cls(
            tuple(float(v) for v in data["lower"]),
            tuple(float(v) for v in data["upper"]),
            None if halflife is None else float(halflife),
        )


def to_prices(
    close: FloatArray, origins: IntArray, log_returns: FloatArray, bands: ResidualBands
) -> Forecast:
    """Cumulative log-return forecasts (n, h) from `origins` of the closes -> price Forecast,
    with the bands scaled at each origin."""
    close = np.asarray(close, dtype=float)
    base = close[origins][:, None]
    scale = bands.scale(close, origins)[:, None]
    return Forecast(
        point=base * np.exp(log_returns),
        lower=base * np.exp(log_returns + scale * np.asarray(bands.lower)[None, :]),
        upper=base * np.exp(log_returns + scale * np.asarray(bands.upper)[None, :]),
    )
