"""What every forecaster (the LSTM and each baseline) shares: the Forecast it returns, the
two-step interface (fit on a training frame, then predict from any history), and intervals
calibrated from residuals.

Interval method, shared by all forecasters: empirical quantiles of out-of-fit residuals in
log-return space, per horizon step, at (1 - coverage) / 2 and (1 + coverage) / 2, added to the
point forecast. The bounds are widened to include zero so that lower <= point <= upper always
holds (a biased residual distribution would otherwise put the point outside its interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from cryptopipe_model.features import FloatArray, IntArray


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


@dataclass(frozen=True)
class ResidualBands:
    """Per-step quantiles of log residuals (actual - point), shape (horizon,) each."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @classmethod
    def fit(cls, residuals: FloatArray, coverage: float) -> ResidualBands:
        if len(residuals) == 0:
            raise ValueError("no residuals to calibrate intervals on")
        n = len(residuals)
        tail = (1.0 - coverage) / 2.0
        # Split-conformal style finite-sample correction: the ceil((n+1)q)/n-th order statistic.
        hi_q = min(math.ceil((n + 1) * (1.0 - tail)) / n, 1.0)
        lo_q = max(1.0 - hi_q, 0.0)
        lower = np.minimum(np.quantile(residuals, lo_q, axis=0), 0.0)
        upper = np.maximum(np.quantile(residuals, hi_q, axis=0), 0.0)
        return cls(tuple(float(v) for v in lower), tuple(float(v) for v in upper))

    def to_json(self) -> dict[str, list[float]]:
        return {"lower": list(self.lower), "upper": list(self.upper)}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> ResidualBands:
        return cls(tuple(data["lower"]), tuple(data["upper"]))


def to_prices(last_close: FloatArray, log_returns: FloatArray, bands: ResidualBands) -> Forecast:
    """Cumulative log-return forecasts (n, h) from closes (n,) -> price Forecast with bands."""
    base = np.asarray(last_close, dtype=float)[:, None]
    return Forecast(
        point=base * np.exp(log_returns),
        lower=base * np.exp(log_returns + np.asarray(bands.lower)[None, :]),
        upper=base * np.exp(log_returns + np.asarray(bands.upper)[None, :]),
    )
