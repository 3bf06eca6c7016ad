from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptopipe_jobs.train.sources import read_embedded
from cryptopipe_model.har import Har, default_models
from cryptopipe_model.realized import realized
from cryptopipe_model.volatility_evaluate import (
    check_consecutive,
    format_table,
    qlike,
    squared_error,
    walk_forward_volatility,
)

pytestmark = pytest.mark.unit

# The bundled-data settings the docs report (docs/volatility.md).
TEST_DAYS = 500
FOLDS = 5


def candles(starts: pd.DatetimeIndex, log_close: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"window_start": starts, "close": np.exp(log_close)})


def test_daily_rv_sums_squared_hourly_log_returns_of_complete_days_only() -> None:
    # 2023-12-31 23:00 gives the base close; 2024-01-01 has 24 returns 0.01, 0.02, ..., 0.24;
    # 2024-01-02 has only 10 candles and is dropped.
    starts = pd.date_range("2023-12-31 23:00", periods=35, freq="h", tz="UTC")
    returns = np.concatenate([[0.0], 0.01 * np.arange(1, 25), np.full(10, -0.05)])
    out = realized(candles(starts, 5.0 + np.cumsum(returns)))
    assert list(out.index) == [pd.Timestamp("2024-01-01", tz="UTC")]
    row = out.iloc[0]
    assert row["rv"] == pytest.approx(1e-4 * sum(k * k for k in range(1, 25)))  # 0.49
    assert row["rvol"] == pytest.approx(0.7)
    assert row["ret"] == pytest.approx(3.0)
    assert row["n"] == 24


def test_a_missing_hour_drops_only_its_day() -> None:
    starts = pd.date_range("2024-01-01 23:00", periods=1 + 3 * 24, freq="h", tz="UTC")
    rng = np.random.default_rng(3)
    log_close = np.cumsum(rng.normal(0.0, 0.01, len(starts)))
    keep = starts != pd.Timestamp("2024-01-03 12:00", tz="UTC")
    out = realized(candles(starts[keep], log_close[keep]))
    assert [d.day for d in out.index] == [2, 4]
    # Unordered input gives the same answer.
    shuffled = candles(starts[keep], log_close[keep]).sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(realized(shuffled), out)
    with pytest.raises(ValueError, match="gaps"):
        check_consecutive(out)


def test_realized_rejects_bad_windows() -> None:
    starts = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    with pytest.raises(ValueError, match="multiple"):
        realized(candles(starts, np.zeros(3)), window=pd.Timedelta("90min"))


def test_qlike_is_zero_at_a_perfect_forecast_and_positive_otherwise() -> None:
    actual = np.array([1e-4, 2e-3, 0.05])
    assert qlike(actual, actual) == pytest.approx(np.zeros(3), abs=1e-15)
    for factor in (0.5, 0.99, 1.01, 3.0):
        assert (qlike(actual, actual * factor) > 0).all()
    # Under-forecasting by a factor costs more than over-forecasting by the same factor.
    assert qlike(actual, actual / 2)[0] > qlike(actual, actual * 2)[0]
    assert squared_error(actual, actual + 1e-3) == pytest.approx(np.full(3, 1e-6))
    with pytest.raises(ValueError, match="positive"):
        qlike(actual, np.array([1e-4, 0.0, 1.0]))


def test_walk_forward_volatility_on_the_bundled_hourly_data() -> None:
    daily = realized(read_embedded())
    models = [*default_models(), Har(log=False, name="har_levels")]
    evaluation = walk_forward_volatility(daily, models, test_size=TEST_DAYS, n_folds=FOLDS)
    summary = evaluation.summary()
    print()
    print(
        f"{len(daily)} complete days {daily.index[0].date()}..{daily.index[-1].date()}; "
        f"{summary['origins']} origins in {summary['folds']} folds, "
        f"origins {summary['first_origin']}.., targets ..{summary['last_target']}"
    )
    print(format_table(evaluation))
    print({name: (s.mse, s.qlike) for name, s in evaluation.scores.items()})

    assert len(evaluation.actual) == TEST_DAYS
    assert set(evaluation.scores) == {m.name for m in models}
    for s in evaluation.scores.values():
        assert math.isfinite(s.mse) and math.isfinite(s.qlike)
        assert s.n == TEST_DAYS
    # Measured on this fixed data (docs/volatility.md): HAR beats naive on both losses, with
    # Diebold-Mariano p < 0.05.
    har = evaluation.scores["har"]
    assert har.mse_ratio < 1 and har.qlike_ratio < 1
    assert har.p_mse_naive < 0.05 and har.p_qlike_naive < 0.05
    assert har.dm_mse_naive < 0 and har.dm_qlike_naive < 0
