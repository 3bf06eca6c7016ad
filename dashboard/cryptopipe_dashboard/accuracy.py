"""The served model's realized errors beside persistence's, from candles and forecasts (pure)."""

from __future__ import annotations

import pandas as pd


def realized_errors(candles: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """One row per forecast whose target candle has closed: the model's and persistence's
    absolute errors (persistence forecasts the close at `made_at`)."""
    columns = ["target_time", "horizon_step", "model", "model_error", "persistence_error"]
    if candles.empty or forecasts.empty:
        return pd.DataFrame(columns=columns)
    closes = candles.set_index("window_end")["close"]
    known = forecasts[
        forecasts["target_time"].isin(closes.index) & forecasts["made_at"].isin(closes.index)
    ]
    actual = closes.loc[known["target_time"]].to_numpy()
    last_seen = closes.loc[known["made_at"]].to_numpy()
    return pd.DataFrame(
        {
            "target_time": known["target_time"].to_numpy(),
            "horizon_step": known["horizon_step"].to_numpy(),
            "model": known["model"].to_numpy(),
            "model_error": abs(known["point"].to_numpy() - actual),
            "persistence_error": abs(last_seen - actual),
        }
    ).sort_values("target_time", kind="stable")


def rolling_comparison(errors: pd.DataFrame, window: int = 50) -> pd.DataFrame:
    """Rolling MAE of the model and of persistence over the last `window` realized forecasts."""
    if errors.empty:
        return pd.DataFrame(columns=["target_time", "model_mae", "persistence_mae"])
    rolled = errors[["model_error", "persistence_error"]].rolling(window, min_periods=1).mean()
    return pd.DataFrame(
        {
            "target_time": errors["target_time"].to_numpy(),
            "model_mae": rolled["model_error"].to_numpy(),
            "persistence_mae": rolled["persistence_error"].to_numpy(),
        }
    )


def mase(errors: pd.DataFrame) -> float | None:
    """Mean absolute error relative to persistence's on the same forecasts (< 1: better)."""
    if errors.empty or errors["persistence_error"].sum() == 0:
        return None
    return float(errors["model_error"].mean() / errors["persistence_error"].mean())
