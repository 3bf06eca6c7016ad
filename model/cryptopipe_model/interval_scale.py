"""Two ways to scale a price interval by volatility, and their comparison on walk-forward origins.

Both turn residual quantiles into an interval the same way (`forecast.ResidualBands`): the
residuals (log actual - log point, per horizon step) of the training origins are divided by a
volatility known at each origin, their quantiles are taken, and at a forecast origin they are
multiplied by the volatility known there. They differ in that volatility:

- ewma: the causal EWMA of squared one-step log returns (`volatility.ewma_volatility`), a
  summary of past swings, what the forecasters serve today;
- har: a *forecast* of volatility, the HAR-RV forecast (`har.fit_har`, fitted on the training
  rows' daily realized variance) of the next day's realized variance, made from the last UTC day
  that is complete at the origin, per candle: sigma = sqrt(rv_forecast / candles per day).

The HAR scale changes once a day (at the candle that completes a day), the EWMA scale every
candle. A day with missing candles is incomplete and left out of the daily series, so HAR's
weekly and monthly components then span more than 5 and 22 calendar days (`realized`).

`compare` scores both on the same origins: coverage, mean width and the interval (Winkler)
score, `stats.winkler_score`, lower is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptopipe_model.baselines import BaselinePredictor
from cryptopipe_model.evaluate import Fold
from cryptopipe_model.features import FloatArray, IntArray, future_log_returns
from cryptopipe_model.forecast import ResidualBands
from cryptopipe_model.har import HAR_WINDOWS, HarFit, fit_har
from cryptopipe_model.realized import DAY, HOUR, realized
from cryptopipe_model.stats import DieboldMariano, diebold_mariano, winkler_score
from cryptopipe_model.volatility import ewma_volatility

EWMA = "ewma"
HAR = "har"
METHODS = (EWMA, HAR)


def complete_day_index(
    candles: pd.DataFrame, daily: pd.DataFrame, interval: pd.Timedelta
) -> IntArray:
    """(n,) per candle, the row in `daily` of the latest day complete once that candle closed
    (its window_start + interval >= the day's end), or -1 if none."""
    closes_at = pd.to_datetime(candles["window_start"], utc=True) + interval
    day_ends = pd.DatetimeIndex(daily.index) + DAY
    found = np.searchsorted(day_ends.to_numpy(), closes_at.to_numpy(), side="right") - 1
    return np.asarray(found, dtype=np.int64)


def har_volatility(
    candles: pd.DataFrame, fit: HarFit, *, interval: pd.Timedelta = HOUR
) -> FloatArray:
    """(n,) per candle, sqrt(HAR forecast of the next day's variance / candles per day), from
    the days complete at that candle only; NaN where HAR has too few days."""
    daily = realized(candles, interval=interval)
    per_day = DAY / interval
    out = np.full(len(candles), np.nan)
    if len(daily) < HAR_WINDOWS[-1]:
        return out
    usable = np.arange(HAR_WINDOWS[-1] - 1, len(daily), dtype=np.int64)
    daily_forecast = np.full(len(daily), np.nan)
    daily_forecast[usable] = fit.predict(daily, usable)
    day = complete_day_index(candles, daily, interval)
    known = day >= 0
    out[known] = np.sqrt(daily_forecast[day[known]] / per_day)
    return out


def scale_at(
    method: str, candles: pd.DataFrame, fit: HarFit | None, interval: pd.Timedelta = HOUR
) -> FloatArray:
    """(n,) the volatility each method knows at every candle."""
    if method == EWMA:
        return ewma_volatility(candles["close"].to_numpy(dtype=float))
    if method == HAR:
        if fit is None:
            raise ValueError("the har scale needs a fitted HAR")
        return har_volatility(candles, fit, interval=interval)
    raise ValueError(f"unknown interval scale {method!r} (known: {', '.join(METHODS)})")


@dataclass(frozen=True)
class IntervalScore:
    method: str
    n: int
    coverage: float
    mean_width: float  # price units
    winkler: float  # mean interval score, price units
    per_origin: FloatArray = field(repr=False)  # (n_origins,) interval score averaged over steps

    def summary(self) -> dict[str, float | int | str]:
        return {
            "method": self.method,
            "n": self.n,
            "coverage": self.coverage,
            "mean_width": self.mean_width,
            "winkler": self.winkler,
        }


def _residuals(
    predictor: BaselinePredictor, log_close: FloatArray, origins: IntArray
) -> FloatArray:
    actual = future_log_returns(np.exp(log_close), origins, predictor.horizon)
    return np.asarray(actual - predictor.rule(log_close, origins), dtype=np.float64)


def fold_intervals(
    candles: pd.DataFrame,
    fold: Fold,
    predictor: BaselinePredictor,
    method: str,
    coverage: float,
    interval: pd.Timedelta = HOUR,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, point, upper) prices (n_origins, horizon) of one fold's test origins, the bands
    calibrated on the fold's training rows only and scaled by `method`."""
    train = candles.iloc[fold.train_start : fold.train_stop].reset_index(drop=True)
    history = candles.iloc[: int(fold.origins[-1]) + 1].reset_index(drop=True)
    fit = fit_har(realized(train, interval=interval)["rv"].to_numpy()) if method == HAR else None
    train_log_close = np.log(train["close"].to_numpy(dtype=float))
    horizon = predictor.horizon
    calibration = np.arange(predictor.min_history() - 1, len(train) - horizon, dtype=np.int64)
    bands = ResidualBands.fit_scaled(
        _residuals(predictor, train_log_close, calibration),
        scale_at(method, train, fit, interval)[calibration],
        coverage,
    )
    log_close = np.log(history["close"].to_numpy(dtype=float))
    origins = fold.origins
    log_point = predictor.rule(log_close, origins)
    scale = scale_at(method, history, fit, interval)[origins][:, None]
    if not np.isfinite(scale).all():
        raise ValueError(f"{method} volatility is unknown at some test origins")
    base = np.exp(log_close[origins])[:, None]
    lower = base * np.exp(log_point + scale * np.asarray(bands.lower)[None, :])
    upper = base * np.exp(log_point + scale * np.asarray(bands.upper)[None, :])
    return lower, base * np.exp(log_point), upper


def compare(
    candles: pd.DataFrame,
    folds: Sequence[Fold],
    predictors: Sequence[BaselinePredictor],
    coverage: float,
    methods: Sequence[str] = METHODS,
    interval: pd.Timedelta = HOUR,
) -> list[IntervalScore]:
    """Score each method's intervals over every fold's test origins; `predictors[i]` is the
    point forecaster fitted on fold i's training rows."""
    if len(predictors) != len(folds):
        raise ValueError("one fitted predictor per fold")
    close = candles["close"].to_numpy(dtype=float)
    scores: list[IntervalScore] = []
    for method in methods:
        lowers, uppers, actuals = [], [], []
        for fold, predictor in zip(folds, predictors, strict=True):
            lower, _, upper = fold_intervals(candles, fold, predictor, method, coverage, interval)
            steps = fold.origins[:, None] + np.arange(1, predictor.horizon + 1)[None, :]
            lowers.append(lower)
            uppers.append(upper)
            actuals.append(close[steps])
        lower, upper, actual = (np.concatenate(x) for x in (lowers, uppers, actuals))
        inside = (actual >= lower) & (actual <= upper)
        interval_scores = winkler_score(actual, lower, upper, coverage)
        scores.append(
            IntervalScore(
                method=method,
                n=int(actual.size),
                coverage=float(inside.mean()),
                mean_width=float((upper - lower).mean()),
                winkler=float(interval_scores.mean()),
                per_origin=interval_scores.mean(axis=1),
            )
        )
    return scores


def winkler_dm(a: IntervalScore, b: IntervalScore, horizon: int) -> DieboldMariano:
    """Diebold-Mariano test on the per-origin interval scores of a against b (positive: a has
    the larger score); overlapping h-step forecasts, so autocovariances up to h - 1 count."""
    # diebold_mariano squares what it is given; interval scores are non-negative losses.
    return diebold_mariano(np.sqrt(a.per_origin), np.sqrt(b.per_origin), horizon)
