"""Forecasters of the next window's realized variance (one day ahead on daily RV).

Inputs are a frame of consecutive windows with the columns of `realized.realized` (`rv`, the
realized variance, and `ret`, the window's log return), row t being day t. A forecast from
origin t is for rv[t + 1] and uses rows <= t only.

- naive: rv[t], the last realized variance;
- ewma: exponential smoothing of RV, s[t] = lam * s[t-1] + (1 - lam) * rv[t], s[0] = rv[0];
- riskmetrics: the same recursion on squared daily returns ret[t]^2 (RiskMetrics 1996), a
  noisier input than RV; kept as the textbook baseline;
- har: HAR-RV (Corsi 2009) in logs,
      log rv[t+1] = b0 + bd log RV_d[t] + bw log RV_w[t] + bm log RV_m[t] + e[t+1],
  with RV_d[t] = rv[t], RV_w[t] = mean(rv[t-4..t]), RV_m[t] = mean(rv[t-21..t]), fitted by OLS
  on the training rows' pairs (t, t + 1). The forecast is exp(mu + s2 / 2), the conditional
  mean under lognormal errors, with s2 the residual variance of the fit. `log=False` fits the
  same regression on levels instead, clipped below at the smallest training RV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from cryptopipe_model.features import FloatArray, IntArray

RISKMETRICS_LAMBDA = 0.94
HAR_WINDOWS = (1, 5, 22)
HAR_COEFFICIENTS = ("const", "daily", "weekly", "monthly")
# Pairs per coefficient below which the OLS fit is refused.
MIN_PAIRS_PER_COEFFICIENT = 10


class VolatilityPredictor(Protocol):
    def predict(self, daily: pd.DataFrame, origins: IntArray) -> FloatArray:
        """(n,) variance forecasts for rows origins + 1, from rows <= each origin."""
        ...


class VolatilityModel(Protocol):
    @property
    def name(self) -> str: ...

    def fit(self, daily: pd.DataFrame) -> VolatilityPredictor: ...


def _rv(daily: pd.DataFrame) -> FloatArray:
    return np.asarray(daily["rv"].to_numpy(dtype=np.float64), dtype=np.float64)


def _check_origins(n_rows: int, origins: IntArray) -> None:
    if len(origins) and (origins.min() < 0 or origins.max() >= n_rows):
        raise ValueError(f"origins must lie in 0..{n_rows - 1}")


@dataclass(frozen=True)
class Naive:
    name: str = "naive"

    def fit(self, daily: pd.DataFrame) -> Naive:
        return self

    def predict(self, daily: pd.DataFrame, origins: IntArray) -> FloatArray:
        rv = _rv(daily)
        _check_origins(len(rv), origins)
        return rv[origins]


def ewma(values: FloatArray, lam: float) -> FloatArray:
    """s[t] = lam * s[t-1] + (1 - lam) * values[t], s[0] = values[0]; causal."""
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lambda must lie in (0, 1), got {lam}")
    smoothed = pd.Series(values).ewm(alpha=1.0 - lam, adjust=False).mean()
    return np.asarray(smoothed.to_numpy(dtype=np.float64), dtype=np.float64)


@dataclass(frozen=True)
class Ewma:
    """EWMA of RV (`source="rv"`) or of squared daily returns (`source="r2"`)."""

    lam: float = RISKMETRICS_LAMBDA
    source: str = "rv"
    name: str = "ewma"

    def fit(self, daily: pd.DataFrame) -> Ewma:
        return self

    def predict(self, daily: pd.DataFrame, origins: IntArray) -> FloatArray:
        _check_origins(len(daily), origins)
        if self.source == "rv":
            values = _rv(daily)
        elif self.source == "r2":
            values = daily["ret"].to_numpy(dtype=np.float64) ** 2
        else:
            raise ValueError(f"unknown EWMA source {self.source!r}")
        return ewma(values, self.lam)[origins]


def riskmetrics(lam: float = RISKMETRICS_LAMBDA) -> Ewma:
    return Ewma(lam=lam, source="r2", name="riskmetrics")


def har_components(rv: FloatArray) -> FloatArray:
    """(n, 3) RV_d, RV_w, RV_m at each row: means of rv over the last 1, 5 and 22 rows, NaN
    where fewer rows exist."""
    rv = np.asarray(rv, dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(rv)])
    out = np.full((len(rv), len(HAR_WINDOWS)), np.nan)
    for column, width in enumerate(HAR_WINDOWS):
        if len(rv) >= width:
            out[width - 1 :, column] = (cumulative[width:] - cumulative[:-width]) / width
    return out


def _design(rv: FloatArray, log: bool) -> FloatArray:
    components = har_components(rv)
    if log:
        components = np.log(components)
    return np.column_stack([np.ones(len(rv)), components])


@dataclass(frozen=True)
class HarFit:
    """Fitted HAR coefficients (HAR_COEFFICIENTS order) and the OLS residual variance."""

    coefficients: tuple[float, float, float, float]
    residual_variance: float
    log: bool
    n_pairs: int
    floor: float  # levels only: the smallest training RV, a lower bound for forecasts

    def predict(self, daily: pd.DataFrame, origins: IntArray) -> FloatArray:
        rv = _rv(daily)
        _check_origins(len(rv), origins)
        if len(origins) and origins.min() < HAR_WINDOWS[-1] - 1:
            raise ValueError(f"HAR needs {HAR_WINDOWS[-1]} rows up to each origin")
        stop = int(origins.max()) + 1 if len(origins) else 0
        mean = _design(rv[:stop], self.log)[origins] @ np.asarray(self.coefficients)
        if self.log:
            return np.asarray(np.exp(mean + self.residual_variance / 2.0), dtype=np.float64)
        return np.asarray(np.maximum(mean, self.floor), dtype=np.float64)


def fit_har(rv: FloatArray, *, log: bool = True) -> HarFit:
    """OLS of rv[t+1] (or its log) on a constant and the HAR components at t, over every t
    whose components and next value lie in `rv`."""
    rv = np.asarray(rv, dtype=np.float64)
    if log and (rv <= 0).any():
        raise ValueError("log HAR needs positive realized variances")
    design = _design(rv, log)[HAR_WINDOWS[-1] - 1 : -1]
    target = rv[HAR_WINDOWS[-1] :]
    if log:
        target = np.log(target)
    n_pairs, n_coefficients = design.shape
    if n_pairs < MIN_PAIRS_PER_COEFFICIENT * n_coefficients:
        raise ValueError(
            f"HAR needs {MIN_PAIRS_PER_COEFFICIENT * n_coefficients + HAR_WINDOWS[-1]} rows, "
            f"got {len(rv)}"
        )
    beta, *_ = np.linalg.lstsq(design, target, rcond=None)
    residuals = target - design @ beta
    b0, bd, bw, bm = (float(b) for b in beta)
    return HarFit(
        coefficients=(b0, bd, bw, bm),
        residual_variance=float(residuals @ residuals) / (n_pairs - n_coefficients),
        log=log,
        n_pairs=n_pairs,
        floor=float(rv.min()) if not log else math.nan,
    )


@dataclass(frozen=True)
class Har:
    log: bool = True
    name: str = "har"

    def fit(self, daily: pd.DataFrame) -> HarFit:
        return fit_har(_rv(daily), log=self.log)


def default_models() -> list[VolatilityModel]:
    return [Naive(), Ewma(), riskmetrics(), Har()]
