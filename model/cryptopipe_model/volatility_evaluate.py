"""Walk-forward evaluation of next-day realized variance forecasts.

The folds are the price evaluation's (`evaluate.make_folds` with horizon 1 on the rows of
consecutive days): the test region is the last `test_size` days that have a next day, cut into
`n_folds` consecutive blocks; each model is fitted on the days up to and including the block's
first origin (an expanding window, or the last `train_size` days) and forecasts rv[t + 1] from
every origin t in the block, seeing days <= t only.

Losses on the variance, per origin: QLIKE, rv / f - log(rv / f) - 1 (zero at a perfect
forecast, positive otherwise, robust to noise in RV as a proxy of the true variance; Patton
2011), and the squared error (rv - f)^2. Ratios divide a model's mean loss by naive's on the
same origins. Diebold-Mariano (stats.diebold_mariano, HLN-corrected, horizon 1) compares each
model's per-origin losses with naive's and HAR's; a positive statistic means the model's loss
is the larger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from cryptopipe_model.evaluate import Fold, make_folds
from cryptopipe_model.features import FloatArray, IntArray
from cryptopipe_model.har import Naive, VolatilityModel, default_models
from cryptopipe_model.realized import DAY
from cryptopipe_model.stats import diebold_mariano

NAIVE = "naive"
HAR = "har"


def qlike(actual: FloatArray, forecast: FloatArray) -> FloatArray:
    """Per-point QLIKE loss of variance forecasts; both must be positive."""
    actual = np.asarray(actual, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    if (actual <= 0).any() or (forecast <= 0).any():
        raise ValueError("QLIKE needs positive variances")
    ratio = actual / forecast
    return np.asarray(ratio - np.log(ratio) - 1.0, dtype=np.float64)


def squared_error(actual: FloatArray, forecast: FloatArray) -> FloatArray:
    return np.asarray((np.asarray(actual) - np.asarray(forecast)) ** 2, dtype=np.float64)


def _dm_p(losses: FloatArray, reference: FloatArray) -> tuple[float, float]:
    # diebold_mariano squares what it is given, so pass the square roots of the losses.
    dm = diebold_mariano(np.sqrt(losses), np.sqrt(reference), 1)
    return dm.statistic, dm.p_value


@dataclass(frozen=True)
class VolatilityScore:
    name: str
    n: int
    mse: float
    qlike: float
    mse_ratio: float  # to naive
    qlike_ratio: float
    dm_qlike_naive: float  # statistic; p-values below
    p_qlike_naive: float
    dm_mse_naive: float
    p_mse_naive: float
    dm_qlike_har: float
    p_qlike_har: float
    dm_mse_har: float
    p_mse_har: float


@dataclass(frozen=True)
class VolatilityEvaluation:
    folds: tuple[Fold, ...]
    origin_days: pd.DatetimeIndex  # the day of each origin; targets are the next days
    actual: FloatArray  # rv[origin + 1]
    forecasts: dict[str, FloatArray]
    scores: dict[str, VolatilityScore]

    def summary(self) -> dict[str, object]:
        """JSON-ready: settings, date range and every model's score (NaN -> null)."""

        def clean(s: VolatilityScore) -> dict[str, object]:
            return {
                key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in asdict(s).items()
            }

        return {
            "folds": len(self.folds),
            "origins": len(self.actual),
            "first_origin": str(self.origin_days[0].date()),
            "last_target": str((self.origin_days[-1] + DAY).date()),
            "models": {name: clean(s) for name, s in self.scores.items()},
        }


def check_consecutive(daily: pd.DataFrame, step: pd.Timedelta = DAY) -> None:
    """HAR's weekly and monthly means count rows as days: refuse gaps in the index."""
    index = pd.DatetimeIndex(daily.index)
    gaps = index[1:][np.diff(index.asi8) != step.value]
    if len(gaps):
        raise ValueError(
            f"{len(gaps)} gaps in the daily series (first before {gaps[0]}); evaluate "
            "consecutive days only"
        )


def _score(name: str, actual: FloatArray, forecasts: dict[str, FloatArray]) -> VolatilityScore:
    losses = {model: (qlike(actual, f), squared_error(actual, f)) for model, f in forecasts.items()}
    q, e = losses[name]
    naive_q, naive_e = losses[NAIVE]
    har_q, har_e = losses.get(HAR, (np.full_like(q, np.nan), np.full_like(e, np.nan)))
    dm_qn, p_qn = _dm_p(q, naive_q)
    dm_en, p_en = _dm_p(e, naive_e)
    dm_qh, p_qh = _dm_p(q, har_q)
    dm_eh, p_eh = _dm_p(e, har_e)
    return VolatilityScore(
        name=name,
        n=len(actual),
        mse=float(e.mean()),
        qlike=float(q.mean()),
        mse_ratio=float(e.mean() / naive_e.mean()),
        qlike_ratio=float(q.mean() / naive_q.mean()),
        dm_qlike_naive=dm_qn,
        p_qlike_naive=p_qn,
        dm_mse_naive=dm_en,
        p_mse_naive=p_en,
        dm_qlike_har=dm_qh,
        p_qlike_har=p_qh,
        dm_mse_har=dm_eh,
        p_mse_har=p_eh,
    )


def walk_forward_volatility(
    daily: pd.DataFrame,
    models: Sequence[VolatilityModel] | None = None,
    *,
    test_size: int,
    n_folds: int = 5,
    train_size: int | None = None,
) -> VolatilityEvaluation:
    """Evaluate every model (naive added if absent) on the same origins of `daily`, consecutive
    days with the columns of realized.realized."""
    check_consecutive(daily)
    models = list(default_models() if models is None else models)
    if not any(m.name == NAIVE for m in models):
        models.insert(0, Naive())
    folds = make_folds(
        len(daily), horizon=1, test_size=test_size, n_folds=n_folds, train_size=train_size
    )
    rv = daily["rv"].to_numpy(dtype=np.float64)
    parts: dict[str, list[FloatArray]] = {m.name: [] for m in models}
    for fold in folds:
        train = daily.iloc[fold.train_start : fold.train_stop]
        history = daily.iloc[: int(fold.origins[-1]) + 1]
        for model in models:
            forecast = model.fit(train).predict(history, fold.origins)
            if forecast.shape != (len(fold.origins),):
                raise ValueError(f"{model.name} returned shape {forecast.shape}")
            parts[model.name].append(forecast)
    origin: IntArray = np.concatenate([f.origins for f in folds])
    actual = rv[origin + 1]
    forecasts = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    scores = {name: _score(name, actual, forecasts) for name in forecasts}
    return VolatilityEvaluation(
        tuple(folds), pd.DatetimeIndex(daily.index[origin]), actual, forecasts, scores
    )


def format_table(evaluation: VolatilityEvaluation) -> str:
    """A Markdown table of the scores: ratios to naive and DM p-values."""
    header = (
        "| model | MSE ratio | QLIKE ratio | DM p QLIKE vs naive | DM p MSE vs naive "
        "| DM p QLIKE vs HAR | DM p MSE vs HAR |\n|---|---|---|---|---|---|---|"
    )

    def cell(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.4g}"

    rows = [
        f"| {s.name} | {s.mse_ratio:.4f} | {s.qlike_ratio:.4f} | {cell(s.p_qlike_naive)} "
        f"| {cell(s.p_mse_naive)} | {cell(s.p_qlike_har)} | {cell(s.p_mse_har)} |"
        for s in evaluation.scores.values()
    ]
    return "\n".join([header, *rows])
