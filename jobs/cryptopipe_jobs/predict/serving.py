"""What the predictor serves: the registry's current version, or the best baseline.

`Registry.serving_choice` decides (current version if one is promoted; otherwise the best
baseline of the latest evaluation, or persistence when nothing is registered). A model version
is loaded once and kept until the choice changes. A baseline is refitted on the kept history
at each forecast (cheap: closed-form rules); its intervals come from its residuals there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptopipe_model.baselines import make_baseline
from cryptopipe_model.forecast import Forecast
from cryptopipe_model.lstm import LstmPredictor
from cryptopipe_model.registry import Registry, ServingChoice
from cryptopipe_schemas.spec import ModelSpec

# A baseline's interval is calibrated on its residuals over the kept history: wait for this many.
MIN_CALIBRATION_ORIGINS = 20


@dataclass(frozen=True)
class Served:
    choice: ServingChoice
    label: str  # the Forecast record's `model`: "<model>-<version>" or the baseline's name
    horizon: int
    coverage: float
    predictor: LstmPredictor | None = None

    def same_choice(self, other: ServingChoice) -> bool:
        return (self.choice.kind, self.choice.name) == (other.kind, other.name)

    def min_history(self) -> int:
        return self.predictor.min_history() if self.predictor is not None else 0


def load(registry: Registry, choice: ServingChoice, spec: ModelSpec) -> Served:
    if choice.kind == "model":
        record = registry.record(choice.name)
        predictor = registry.load(choice.name)
        return Served(
            choice,
            f"{record.model_name}-{record.version}",
            predictor.spec.horizon,
            predictor.spec.coverage,
            predictor,
        )
    return Served(choice, choice.name, spec.horizon, spec.coverage)


def forecast_latest(served: Served, candles: pd.DataFrame) -> Forecast | None:
    """A (1, horizon) forecast from the last candle, or None while the history is too short."""
    if served.predictor is not None:
        if len(candles) < served.predictor.min_history():
            return None
        return served.predictor.predict_latest(candles)
    baseline = make_baseline(served.choice.name, served.horizon, served.coverage)
    try:
        fitted = baseline.fit(candles)
    except ValueError:  # too few rows to fit its parameters or calibrate its intervals
        return None
    if len(candles) < fitted.min_history() + served.horizon + MIN_CALIBRATION_ORIGINS:
        return None
    return fitted.predict(candles, np.array([len(candles) - 1], dtype=np.int64))
