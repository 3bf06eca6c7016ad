"""Walk-forward (rolling origin) evaluation of forecasters against persistence.

The test region is the last `test_size` origins that have `horizon` future closes. It is cut
into `n_folds` consecutive blocks; for each block every model is fitted on the rows up to and
including the block's first origin (all of them, or the last `train_size` with a rolling
window) and forecasts from every origin in the block, seeing rows <= origin only.

Metrics (price units), per horizon step and overall:
- MAE, RMSE;
- MASE: the model's MAE divided by persistence's MAE on the same origins and steps (the naive
  scale taken out of sample), so persistence scores exactly 1 and below 1 beats it;
- directional accuracy: sign of forecast change vs sign of actual change from the origin
  close, ties (either change zero) left out; exact two-sided binomial test against 50%
  (overall pools all steps, whose outcomes overlap, so read that p-value as indicative);
- Diebold-Mariano vs persistence on squared errors with the HLN correction, step k using
  lags up to k - 1; overall on the per-origin mean over steps with lags up to horizon - 1;
- interval coverage (share of actuals within [lower, upper]) and mean width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from cryptopipe_model.baselines import BASELINE_NAMES, Persistence
from cryptopipe_model.features import FloatArray, IntArray
from cryptopipe_model.forecast import Forecast, Model
from cryptopipe_model.stats import binomial_two_sided_p, diebold_mariano

REFERENCE = "persistence"


@dataclass(frozen=True)
class Fold:
    train_start: int
    train_stop: int  # exclusive: the training frame is rows train_start .. train_stop - 1
    origins: IntArray


def make_folds(
    n_rows: int, *, horizon: int, test_size: int, n_folds: int, train_size: int | None = None
) -> list[Fold]:
    last_origin = n_rows - horizon - 1
    first_origin = last_origin - test_size + 1
    if test_size < n_folds or first_origin < 1:
        raise ValueError(
            f"{n_rows} rows are too few for {test_size} test origins in {n_folds} folds"
        )
    folds = []
    for block in np.array_split(np.arange(first_origin, last_origin + 1), n_folds):
        stop = int(block[0]) + 1
        start = 0 if train_size is None else max(0, stop - train_size)
        folds.append(Fold(start, stop, block.astype(np.int64)))
    return folds


@dataclass(frozen=True)
class ModelRun:
    """One model's out-of-sample forecasts over all folds, in origin order."""

    name: str
    origin: IntArray
    last_close: FloatArray
    actual: FloatArray  # (n, horizon) prices
    forecast: Forecast


@dataclass(frozen=True)
class Metrics:
    n: int
    mae: float
    rmse: float
    mase: float
    direction_accuracy: float
    direction_n: int
    direction_p: float
    dm_statistic: float
    dm_p: float
    coverage: float
    mean_width: float


@dataclass(frozen=True)
class ModelScore:
    name: str
    overall: Metrics
    per_step: tuple[Metrics, ...]


def _direction(
    point: FloatArray, actual: FloatArray, last_close: FloatArray
) -> tuple[float, int, float]:
    predicted = np.sign(point - last_close)
    realized = np.sign(actual - last_close)
    counted = (predicted != 0) & (realized != 0)
    n = int(counted.sum())
    if n == 0:
        return math.nan, 0, math.nan
    hits = int((predicted[counted] == realized[counted]).sum())
    return hits / n, n, binomial_two_sided_p(hits, n)


def _metrics(
    point: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    actual: FloatArray,
    last_close: FloatArray,
    reference_point: FloatArray,
    horizon: int,
) -> Metrics:
    """Metrics over the given columns (one step, or all); inputs are (n, steps)."""
    errors = actual - point
    reference_errors = actual - reference_point
    reference_mae = float(np.abs(reference_errors).mean())
    mae = float(np.abs(errors).mean())
    accuracy, direction_n, direction_p = _direction(point, actual, last_close[:, None])
    dm = diebold_mariano(
        np.sqrt((errors**2).mean(axis=1)), np.sqrt((reference_errors**2).mean(axis=1)), horizon
    )
    return Metrics(
        n=int(errors.size),
        mae=mae,
        rmse=float(np.sqrt((errors**2).mean())),
        mase=mae / reference_mae if reference_mae > 0 else math.nan,
        direction_accuracy=accuracy,
        direction_n=direction_n,
        direction_p=direction_p,
        dm_statistic=dm.statistic,
        dm_p=dm.p_value,
        coverage=float(((actual >= lower) & (actual <= upper)).mean()),
        mean_width=float((upper - lower).mean()),
    )


def score(run: ModelRun, reference: ModelRun) -> ModelScore:
    """Metrics of a run against the persistence run on the same origins."""
    if not np.array_equal(run.origin, reference.origin):
        raise ValueError("runs must cover the same origins")
    f, ref = run.forecast, reference.forecast.point
    steps = tuple(
        _metrics(
            f.point[:, [k]],
            f.lower[:, [k]],
            f.upper[:, [k]],
            run.actual[:, [k]],
            run.last_close,
            ref[:, [k]],
            k + 1,
        )
        for k in range(f.horizon)
    )
    overall = _metrics(f.point, f.lower, f.upper, run.actual, run.last_close, ref, f.horizon)
    return ModelScore(run.name, overall, steps)


@dataclass(frozen=True)
class Evaluation:
    horizon: int
    coverage: float
    folds: tuple[Fold, ...]
    runs: dict[str, ModelRun]
    scores: dict[str, ModelScore]

    def best_baseline(self) -> ModelScore:
        """The baseline with the lowest overall MASE (persistence on ties)."""
        baselines = [self.scores[name] for name in BASELINE_NAMES if name in self.scores]
        return min(baselines, key=lambda s: (s.overall.mase, s.name != REFERENCE))

    def summary(self) -> dict[str, object]:
        """JSON-ready: settings and every model's overall and per-step metrics (NaN -> null)."""

        def clean(metrics: Metrics) -> dict[str, float | int | None]:
            return {
                key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in asdict(metrics).items()
            }

        return {
            "horizon": self.horizon,
            "coverage": self.coverage,
            "folds": len(self.folds),
            "test_origins": int(sum(len(f.origins) for f in self.folds)),
            "models": {
                name: {
                    "overall": clean(s.overall),
                    "per_step": [clean(m) for m in s.per_step],
                }
                for name, s in self.scores.items()
            },
        }


def walk_forward(
    candles: pd.DataFrame,
    models: Sequence[Model],
    *,
    horizon: int,
    coverage: float,
    test_size: int,
    n_folds: int = 5,
    train_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate every model (and persistence, added if absent) on the same rolling origins."""
    folds = make_folds(
        len(candles), horizon=horizon, test_size=test_size, n_folds=n_folds, train_size=train_size
    )
    if not any(m.name == REFERENCE for m in models):
        models = [Persistence(horizon, coverage), *models]
    close = candles["close"].to_numpy(dtype=float)
    parts: dict[str, list[Forecast]] = {m.name: [] for m in models}
    for index, fold in enumerate(folds):
        train = candles.iloc[fold.train_start : fold.train_stop]
        history = candles.iloc[: int(fold.origins[-1]) + 1]
        for model in models:
            if progress is not None:
                progress(f"fold {index + 1}/{len(folds)}: {model.name}")
            forecast = model.fit(train).predict(history, fold.origins)
            if forecast.point.shape != (len(fold.origins), horizon):
                raise ValueError(f"{model.name} returned shape {forecast.point.shape}")
            parts[model.name].append(forecast)
    origin = np.concatenate([f.origins for f in folds])
    actual = close[origin[:, None] + np.arange(1, horizon + 1)[None, :]]
    runs = {
        name: ModelRun(
            name,
            origin,
            close[origin],
            actual,
            Forecast(
                point=np.concatenate([f.point for f in forecasts]),
                lower=np.concatenate([f.lower for f in forecasts]),
                upper=np.concatenate([f.upper for f in forecasts]),
            ),
        )
        for name, forecasts in parts.items()
    }
    scores = {name: score(run, runs[REFERENCE]) for name, run in runs.items()}
    return Evaluation(horizon, coverage, tuple(folds), runs, scores)
