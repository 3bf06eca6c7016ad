"""Features from candles, supervised windows and a JSON-serializable standard scaler.

Candles come as a DataFrame with the Candle record's columns (`window_start` as UTC datetimes,
`open, high, low, close, base_volume, quote_volume, vwap, trade_count`), one row per interval,
sorted and without gaps (`check_candles` says what is wrong otherwise).

Every feature at row t uses rows <= t only, so a window ending at t never sees the future.

Targets: the cumulative log return of the close `k` steps ahead relative to the window's last
close, `y[k-1] = log(close[t+k] / close[t])` for k = 1..horizon. Returns are close to
stationary and on one scale across years of prices; a forecast becomes a price again as
`close[t] * exp(y)`, and since exp is monotone, interval bounds map the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptopipe_schemas.avro_schemas import CANDLE_FIELDS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The Candle fields the features read, in the schema's order: the window's start, then its
# prices, volumes and VWAP through its trade count.
CANDLE_COLUMNS = (
    "window_start",
    *CANDLE_FIELDS[CANDLE_FIELDS.index("open") : CANDLE_FIELDS.index("trade_count") + 1],
)
FEATURE_COLUMNS = (
    "log_return",
    "hl_range",
    "volume_z",
    "vwap_distance",
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
)
VOLUME_WINDOW = 24


class CandleDataError(ValueError):
    """Candles that cannot be used for training or forecasting; the message says why."""


def check_candles(candles: pd.DataFrame, interval: pd.Timedelta | None = None) -> None:
    """Raise CandleDataError for missing columns, NaNs, non-positive prices, disorder or gaps."""
    missing = [column for column in CANDLE_COLUMNS if column not in candles.columns]
    if missing:
        raise CandleDataError(f"missing columns: {', '.join(missing)}")
    numeric = candles[list(CANDLE_COLUMNS[1:])]
    nan_rows = numeric.isna().any(axis=1)
    if nan_rows.any():
        raise CandleDataError(f"{int(nan_rows.sum())} rows with missing values")
    prices = candles[["open", "high", "low", "close"]].to_numpy(dtype=float)
    if (prices <= 0).any():
        raise CandleDataError("non-positive prices")
    starts = pd.DatetimeIndex(candles["window_start"])
    steps = starts[1:] - starts[:-1]
    if (steps <= pd.Timedelta(0)).any():
        raise CandleDataError("window_start is not strictly increasing")
    expected = interval if interval is not None else (steps.min() if len(steps) else None)
    if expected is not None and len(steps):
        gaps = int((steps != expected).sum())
        if gaps:
            raise CandleDataError(f"{gaps} gaps: consecutive windows are not {expected} apart")


def _trailing_z(values: FloatArray, window: int) -> FloatArray:
    """(v[t] - mean) / std (ddof 1) over v[t-window+1 .. t]; NaN for the first window - 1 rows;
    a constant window gives 0."""
    out = np.full(len(values), np.nan)
    if len(values) < window:
        return out
    trailing = np.lib.stride_tricks.sliding_window_view(values, window)
    std = trailing.std(axis=1, ddof=1)
    centered = values[window - 1 :] - trailing.mean(axis=1)
    out[window - 1 :] = centered / np.where(std > 0, std, 1.0)
    return out


def feature_matrix(candles: pd.DataFrame, volume_window: int = VOLUME_WINDOW) -> FloatArray:
    """(rows, len(FEATURE_COLUMNS)) features in numpy, for the serving path (one forecast per
    candle: pandas' per-call overhead was most of it); warm-up rows are NaN."""
    close = candles["close"].to_numpy(dtype=float)
    log_return = np.full(len(close), np.nan)
    log_return[1:] = np.diff(np.log(close))
    # Volume spans orders of magnitude; a z-score of its log against the trailing window
    # (current row included, it is known at the close) is scale-free and past-only.
    volume_z = _trailing_z(np.log1p(candles["base_volume"].to_numpy(dtype=float)), volume_window)
    starts = pd.DatetimeIndex(candles["window_start"])
    # Wall-clock minutes since the epoch (UTC for the Candle contract's timestamps).
    wall = starts.tz_localize(None) if starts.tz is not None else starts
    minutes = wall.as_unit("ns").asi8 // 60_000_000_000
    hour = (minutes % (24 * 60)) / 60.0 * (2 * math.pi / 24)
    weekday = ((minutes // (24 * 60) + 3) % 7) * (2 * math.pi / 7)  # 1970-01-01: Thursday
    high = candles["high"].to_numpy(dtype=float)
    low = candles["low"].to_numpy(dtype=float)
    vwap = candles["vwap"].to_numpy(dtype=float)
    columns = (
        log_return,
        np.log(high / low),
        volume_z,
        np.log(close / vwap),
        np.sin(hour),
        np.cos(hour),
        np.sin(weekday),
        np.cos(weekday),
    )
    return np.column_stack(columns).astype(np.float64, copy=False)


def candle_features(candles: pd.DataFrame, volume_window: int = VOLUME_WINDOW) -> pd.DataFrame:
    """The feature frame, one row per candle; warm-up rows (first `volume_window`) are NaN."""
    return pd.DataFrame(
        feature_matrix(candles, volume_window), columns=list(FEATURE_COLUMNS), index=candles.index
    )


def warmup(volume_window: int = VOLUME_WINDOW) -> int:
    """Rows at the start whose features are undefined (NaN)."""
    return max(volume_window - 1, 1)


@dataclass(frozen=True)
class Windows:
    """X: (n, lookback, features); y: (n, horizon) or (n, 0) without targets; origin: (n,)
    row positions of each window's last step (the forecast origin)."""

    x: FloatArray
    y: FloatArray
    origin: IntArray


def future_log_returns(close: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
    """(n, horizon): log(close[o + k] / close[o]) for k = 1..horizon; origins must leave room."""
    log_close = np.log(np.asarray(close, dtype=float))
    steps = origins[:, None] + np.arange(1, horizon + 1)[None, :]
    return np.asarray(log_close[steps] - log_close[origins][:, None], dtype=np.float64)


def window_inputs(features: FloatArray, origins: IntArray, lookback: int) -> FloatArray:
    """(n, lookback, f): the feature rows origin-lookback+1 .. origin for each origin."""
    offsets = np.arange(-lookback + 1, 1)
    return np.asarray(features[origins[:, None] + offsets[None, :]], dtype=np.float64)


def valid_origins(n_rows: int, lookback: int, horizon: int, first_valid: int) -> IntArray:
    """Origins whose window lies in defined features and whose targets lie inside the data."""
    start = first_valid + lookback - 1
    stop = n_rows - horizon
    return np.arange(start, max(stop, start), dtype=np.int64)


def make_windows(features: FloatArray, close: FloatArray, lookback: int, horizon: int) -> Windows:
    """All supervised windows of `lookback` feature rows and `horizon` future log returns.

    Rows with NaN features (the warm-up) are skipped; windows never straddle them.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(close):
        raise ValueError("features must be (rows, features) with one row per close")
    defined = np.asarray(~np.isnan(features).any(axis=1), dtype=bool)
    first_valid = int(np.argmax(defined)) if defined.any() else len(features)
    if not defined[first_valid:].all():
        raise CandleDataError("NaN features after the warm-up")
    origins = valid_origins(len(features), lookback, horizon, first_valid)
    return Windows(
        x=window_inputs(features, origins, lookback),
        y=future_log_returns(np.asarray(close, dtype=float), origins, horizon),
        origin=origins,
    )


@dataclass(frozen=True)
class StandardScaler:
    """Per-column (last axis) standardization; fit on training data only."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, values: FloatArray) -> StandardScaler:
        flat = np.asarray(values, dtype=float).reshape(-1, np.shape(values)[-1])
        std = flat.std(axis=0)
        # A constant column (e.g. weekday on a short sample) scales by 1, not by 0.
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(float(v) for v in flat.mean(axis=0)), tuple(float(v) for v in std))

    def transform(self, values: FloatArray) -> FloatArray:
        return np.asarray((values - np.asarray(self.mean)) / np.asarray(self.scale))

    def inverse(self, values: FloatArray) -> FloatArray:
        return np.asarray(values * np.asarray(self.scale) + np.asarray(self.mean))

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> StandardScaler:
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["scale"]))
