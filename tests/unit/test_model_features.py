from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cryptopipe_jobs.producer.recorded import Kline, load_embedded
from cryptopipe_model.features import (
    FEATURE_COLUMNS,
    CandleDataError,
    StandardScaler,
    candle_features,
    check_candles,
    future_log_returns,
    make_windows,
    warmup,
)
from model_support import random_walk_candles

pytestmark = pytest.mark.unit


def klines_to_frame(klines: list[Kline]) -> pd.DataFrame:
    rows = []
    for k in klines:
        high, low, close = float(k.high), float(k.low), float(k.close)
        base = float(k.volume)
        quote = float(k.quote_volume) if k.quote_volume is not None else None
        rows.append(
            {
                "window_start": pd.Timestamp(k.open_time_ms, unit="ms", tz="UTC"),
                "open": float(k.open),
                "high": high,
                "low": low,
                "close": close,
                "base_volume": base,
                "quote_volume": quote if quote is not None else base * close,
                "vwap": quote / base if quote and base > 0 else (high + low + close) / 3,
                "trade_count": k.trade_count or 0,
            }
        )
    return pd.DataFrame(rows)


def test_features_by_hand() -> None:
    frame = random_walk_candles(40)
    features = candle_features(frame, volume_window=5)
    assert tuple(features.columns) == FEATURE_COLUMNS
    close = frame["close"].to_numpy()
    assert math.isnan(features["log_return"].iloc[0])
    assert features["log_return"].iloc[7] == pytest.approx(math.log(close[7] / close[6]))
    row = frame.iloc[9]
    assert features["hl_range"].iloc[9] == pytest.approx(math.log(row.high / row.low))
    assert features["vwap_distance"].iloc[9] == pytest.approx(math.log(row.close / row.vwap))
    logs = np.log1p(frame["base_volume"].to_numpy()[5:10])
    expected_z = (logs[-1] - logs.mean()) / logs.std(ddof=1)
    assert features["volume_z"].iloc[9] == pytest.approx(expected_z)
    assert features["volume_z"].iloc[: warmup(5)].isna().all()
    # 2024-01-01 is a Monday; row 6 is 06:00.
    assert features["hour_sin"].iloc[6] == pytest.approx(1.0)
    assert features["weekday_cos"].iloc[6] == pytest.approx(1.0)


def test_future_changes_never_change_past_features_or_windows() -> None:
    frame = random_walk_candles(300)
    changed = frame.copy()
    cut = 200
    rng = np.random.default_rng(1)
    for column in ("open", "high", "low", "close", "base_volume", "quote_volume", "vwap"):
        changed.loc[cut:, column] = changed.loc[cut:, column] * rng.uniform(0.5, 2.0, 100)
    before = candle_features(frame).to_numpy()
    after = candle_features(changed).to_numpy()
    np.testing.assert_array_equal(before[:cut], after[:cut])
    assert not np.allclose(before[cut:], after[cut:], equal_nan=True)

    lookback, horizon = 12, 3
    w1 = make_windows(before, frame["close"].to_numpy(), lookback, horizon)
    w2 = make_windows(after, changed["close"].to_numpy(), lookback, horizon)
    # Windows whose inputs and targets end before the cut are identical.
    past = w1.origin + horizon < cut
    np.testing.assert_array_equal(w1.x[past], w2.x[past])
    np.testing.assert_array_equal(w1.y[past], w2.y[past])
    # Inputs of windows with origins before the cut are identical even if their targets moved.
    np.testing.assert_array_equal(w1.x[w1.origin < cut], w2.x[w2.origin < cut])


def test_window_shapes_and_targets() -> None:
    frame = random_walk_candles(100)
    features = candle_features(frame, volume_window=10).to_numpy()
    close = frame["close"].to_numpy()
    w = make_windows(features, close, lookback=8, horizon=4)
    first = warmup(10)
    n = 100 - first - 8 + 1 - 4
    assert w.x.shape == (n, 8, len(FEATURE_COLUMNS))
    assert w.y.shape == (n, 4)
    assert w.origin[0] == first + 7
    assert w.origin[-1] == 100 - 4 - 1
    assert not np.isnan(w.x).any()
    o = int(w.origin[5])
    np.testing.assert_array_equal(w.x[5], features[o - 7 : o + 1])
    assert w.y[5, 2] == pytest.approx(math.log(close[o + 3] / close[o]))
    np.testing.assert_allclose(
        future_log_returns(close, np.array([o]), 4)[0], np.log(close[o + 1 : o + 5] / close[o])
    )


def test_scaler_fits_training_rows_and_round_trips() -> None:
    values = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    scaler = StandardScaler.fit(values)
    assert scaler.mean == (3.0, 5.0)
    assert scaler.scale == pytest.approx((math.sqrt(8 / 3), 1.0))  # constant column scales by 1
    restored = StandardScaler.from_json(json.loads(json.dumps(scaler.to_json())))
    assert restored == scaler
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)
    np.testing.assert_allclose(scaler.transform(values)[:, 0], [-1.2247449, 0, 1.2247449])


def test_check_candles_names_the_problem() -> None:
    frame = random_walk_candles(30)
    check_candles(frame, pd.Timedelta(hours=1))
    with pytest.raises(CandleDataError, match="gaps"):
        check_candles(frame.drop(index=10), pd.Timedelta(hours=1))
    broken = frame.copy()
    broken.loc[3, "close"] = np.nan
    with pytest.raises(CandleDataError, match="missing values"):
        check_candles(broken)
    with pytest.raises(CandleDataError, match="missing columns: vwap"):
        check_candles(frame.drop(columns=["vwap"]))


def test_real_embedded_history_gives_finite_features() -> None:
    frame = klines_to_frame(load_embedded())
    assert len(frame) > 20_000
    features = candle_features(frame).to_numpy()
    assert np.isfinite(features[warmup() :]).all()
    windows = make_windows(features, frame["close"].to_numpy(), 48, 6)
    assert windows.x.shape[1:] == (48, len(FEATURE_COLUMNS))
    assert np.isfinite(windows.y).all()
