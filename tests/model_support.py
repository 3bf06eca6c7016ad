"""Candle frames for model tests, shaped like schemas' Candle (the columns model/ reads)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptopipe_model.evaluate import Evaluation, walk_forward
from cryptopipe_model.lstm import LstmModel, LstmPredictor
from cryptopipe_schemas.spec import ModelSpec


def candle_frame(
    close: np.ndarray, *, spread: float, rng: np.random.Generator | None = None, seed: int = 0
) -> pd.DataFrame:
    """Hourly candles around the given closes: high/low within `spread`, random volume."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    n = len(close)
    high = close * (1 + rng.uniform(0, spread, n))
    low = close * (1 - rng.uniform(0, spread, n))
    volume = rng.uniform(1, 10, n)
    return pd.DataFrame(
        {
            "window_start": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "open": close,
            "high": high,
            "low": low,
            "close": close,
            "base_volume": volume,
            "quote_volume": volume * close,
            "vwap": (high + low + close) / 3,
            "trade_count": np.full(n, 10),
        }
    )


def random_walk_candles(n: int, seed: int = 0) -> pd.DataFrame:
    """A log-normal random walk of closes (1% steps) with 1% high/low spread."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return candle_frame(close, spread=0.01, rng=rng)


def trained(frame: pd.DataFrame, spec: ModelSpec) -> tuple[LstmPredictor, Evaluation]:
    """A fitted LSTM and its one-fold walk-forward evaluation against every baseline."""
    model = LstmModel(spec, seed=3)
    evaluation = walk_forward(
        frame, [model], horizon=spec.horizon, coverage=spec.coverage, test_size=60, n_folds=1
    )
    return model.fit(frame), evaluation
