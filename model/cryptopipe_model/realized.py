"""Realized variance and volatility of coarse windows from the finer candles inside them.

For candles at a fixed `interval` (hourly by default), the one-interval log return of candle i
is r[i] = log(close[i] / close[i-1]). It covers the price move from the end of candle i-1 (the
start of candle i) to the end of candle i, so it belongs to the coarse window (a UTC day by
default) that contains candle i's `window_start`. A day's first return therefore starts from the
previous day's last close, and the returns of consecutive days tile time without overlap.

Per window:
- rv: realized variance, the sum of the squared returns in the window;
- rvol: realized volatility, sqrt(rv);
- ret: the window's log return, the sum of its returns (close-to-close);
- n: the number of returns.

Only complete windows are kept: exactly window / interval returns, each between candles exactly
one interval apart. A return across a gap (missing candles) is not a one-interval return and is
dropped, so the window that holds it is incomplete and left out, as are the partial first and
last windows of a history. Windows are labelled by their start (UTC, tz-aware).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = pd.Timedelta("1D")
HOUR = pd.Timedelta("1h")
REALIZED_COLUMNS = ("rv", "rvol", "ret", "n")


def realized(
    candles: pd.DataFrame, *, interval: pd.Timedelta = HOUR, window: pd.Timedelta = DAY
) -> pd.DataFrame:
    """Realized measures of every complete `window` from `close` at each `window_start`.

    Returns a frame indexed by window start with REALIZED_COLUMNS, sorted, possibly with gaps
    where windows were incomplete.
    """
    if interval <= pd.Timedelta(0) or window % interval != pd.Timedelta(0):
        raise ValueError(f"window {window} must be a positive multiple of interval {interval}")
    per_window = window // interval
    start = pd.to_datetime(candles["window_start"], utc=True)
    frame = pd.DataFrame(
        {"start": start.to_numpy(), "close": candles["close"].to_numpy(dtype=float)}
    ).sort_values("start", kind="stable")
    if frame["start"].duplicated().any():
        raise ValueError("candles have duplicate window_start values")
    if (frame["close"] <= 0).any() or frame["close"].isna().any():
        raise ValueError("closes must be positive")
    returns = pd.Series(np.log(frame["close"].to_numpy()), index=frame.index).diff()
    valid = frame["start"].diff() == interval
    frame = frame.assign(r=returns, r2=returns**2)[valid]
    # Floor relative to the epoch, so windows of one day start at 00:00 UTC.
    label = frame["start"].dt.floor(window)
    grouped = frame.groupby(label)
    out = pd.DataFrame(
        {"rv": grouped["r2"].sum(), "ret": grouped["r"].sum(), "n": grouped["r"].count()}
    )
    out = out[out["n"] == per_window]
    out.insert(1, "rvol", out["rv"] ** 0.5)
    out["n"] = out["n"].astype("int64")
    out.index.name = "window_start"
    return out[list(REALIZED_COLUMNS)]
