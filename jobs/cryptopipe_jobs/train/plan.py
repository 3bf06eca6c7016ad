"""Pure checks before training: how many rows a run needs."""

from __future__ import annotations

from cryptopipe_model.features import VOLUME_WINDOW, warmup
from cryptopipe_schemas.spec import ModelSpec

MIN_FIT_WINDOWS = 32  # the smallest training set (after the validation split) worth a fit


def lstm_fit_windows(rows: int, spec: ModelSpec, validation_fraction: float) -> int:
    """Training windows LstmModel.fit gets from `rows` candles (after its validation split and
    purge); mirrors lstm.py so that too few rows fail before any training starts."""
    windows = rows - (warmup(VOLUME_WINDOW) + spec.lookback - 1) - spec.horizon
    if windows <= 0:
        return 0
    validation = max(1, int(windows * validation_fraction))
    return max(0, windows - validation - spec.horizon)


def min_training_rows(spec: ModelSpec, validation_fraction: float) -> int:
    rows = spec.lookback + spec.horizon
    while lstm_fit_windows(rows, spec, validation_fraction) < MIN_FIT_WINDOWS:
        rows += 1
    return rows


def required_rows(spec: ModelSpec, test_size: int, validation_fraction: float) -> int:
    """Rows for a walk-forward run whose first fold can train: its training frame holds
    rows - horizon - test_size + 1 candles (evaluate.make_folds)."""
    return min_training_rows(spec, validation_fraction) + spec.horizon + test_size - 1
