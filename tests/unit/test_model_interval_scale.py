"""Interval scaling by forecast volatility (HAR) against past volatility (EWMA): the interval
score, the causal daily index, and the walk-forward comparison on a series whose volatility
clusters by day."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.baselines import BaselinePredictor, Persistence
from cryptopipe_model.evaluate import make_folds
from cryptopipe_model.har import fit_har
from cryptopipe_model.interval_scale import (
    EWMA,
    HAR,
    IntervalScore,
    compare,
    complete_day_index,
    har_volatility,
    scale_at,
    winkler_dm,
)
from cryptopipe_model.realized import realized
from cryptopipe_model.stats import winkler_score

pytestmark = pytest.mark.unit

COVERAGE = 0.9
HORIZON = 3


def hourly(days: int, seed: int, persistence: float = 0.9, shock: float = 0.35) -> pd.DataFrame:
    """Hourly closes whose volatility is drawn each midnight from a log-AR(1) of the day
    before (`persistence`, and `shock` the standard deviation of its innovations)."""
    rng = np.random.default_rng(seed)
    log_sigma = np.empty(days)
    log_sigma[0] = math.log(0.01)
    for day in range(1, days):
        log_sigma[day] = math.log(0.01) + persistence * (log_sigma[day - 1] - math.log(0.01))
        log_sigma[day] += rng.normal(0, shock)
    returns = rng.normal(0, 1, days * 24) * np.repeat(np.exp(log_sigma), 24)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "window_start": pd.date_range(start, periods=days * 24, freq="1h"),
            "close": 100 * np.exp(np.cumsum(returns)),
        }
    )


def test_winkler_score_by_hand() -> None:
    # alpha 0.2: a miss costs 2 / 0.2 = 10 times its distance, on top of the width.
    scores = winkler_score(
        np.array([5.0, 0.0, 13.0]), np.array([4.0, 2.0, 4.0]), np.array([8.0, 6.0, 8.0]), 0.8
    )
    np.testing.assert_allclose(scores, [4.0, 4.0 + 20.0, 4.0 + 50.0])
    with pytest.raises(ValueError, match="coverage"):
        winkler_score(np.ones(1), np.ones(1), np.ones(1), 1.0)


def test_complete_day_is_known_only_after_its_last_candle() -> None:
    candles = hourly(3, seed=0)
    daily = realized(candles)
    day = complete_day_index(candles, daily, pd.Timedelta("1h"))
    # Day 0 has no return at 00:00 (no previous close), so it is incomplete and left out; day 1
    # completes with its 23:00 candle (row 47), day 2 with row 71.
    assert len(daily) == 2
    assert (day[:47] == -1).all()
    assert (day[47:71] == 0).all()
    assert day[71] == 1


def test_har_volatility_is_causal_and_daily() -> None:
    candles = hourly(120, seed=1)
    fit = fit_har(realized(candles.iloc[: 90 * 24])["rv"].to_numpy())
    sigma = har_volatility(candles, fit)
    changed = candles.copy()
    changed.loc[100 * 24 :, "close"] *= np.exp(np.linspace(0, 0.5, 20 * 24))
    sigma_changed = har_volatility(changed, fit)
    # Rows up to the last candle of day 99 see nothing of day 100.
    np.testing.assert_array_equal(sigma[: 100 * 24], sigma_changed[: 100 * 24])
    assert not np.allclose(sigma[101 * 24 :], sigma_changed[101 * 24 :])
    # Constant within a day (from its first candle to the one before its last).
    later = sigma[50 * 24 : 51 * 24 - 1]
    assert np.isfinite(later).all() and np.ptp(later) == 0.0
    # Too few complete days for HAR's monthly component: unknown.
    assert np.isnan(sigma[: 22 * 24]).all()


def test_scale_at_knows_its_methods() -> None:
    candles = hourly(10, seed=2)
    assert np.isfinite(scale_at(EWMA, candles, None)[1:]).all()
    with pytest.raises(ValueError, match="needs a fitted HAR"):
        scale_at(HAR, candles, None)
    with pytest.raises(ValueError, match="unknown interval scale"):
        scale_at("garch", candles, None)


def scores_of(candles: pd.DataFrame) -> dict[str, IntervalScore]:
    folds = make_folds(len(candles), horizon=HORIZON, test_size=150 * 24, n_folds=3)
    predictors = []
    for fold in folds:
        train = candles.iloc[fold.train_start : fold.train_stop]
        fitted = Persistence(HORIZON, COVERAGE).fit(train)
        assert isinstance(fitted, BaselinePredictor)
        predictors.append(fitted)
    with pytest.raises(ValueError, match="one fitted predictor per fold"):
        compare(candles, folds, predictors[:1], COVERAGE)
    scores = {s.method: s for s in compare(candles, folds, predictors, COVERAGE)}
    for score in scores.values():
        assert score.n == 150 * 24 * HORIZON
        assert abs(score.coverage - COVERAGE) < 0.03
    return scores


def test_forecast_volatility_wins_when_volatility_moves_slowly() -> None:
    # A slowly drifting level: HAR's averages of whole days estimate it with far less noise
    # than an EWMA of about a dozen squared hourly returns.
    scores = scores_of(hourly(400, seed=3, persistence=0.98, shock=0.05))
    assert scores[HAR].winkler < scores[EWMA].winkler
    # Small, as differences of a proper score near its optimum are (about 1% over seeds 0..5,
    # Diebold-Mariano p about 0.5): its sign is what this test can hold to.
    assert winkler_dm(scores[HAR], scores[EWMA], HORIZON).statistic < 0


def test_past_volatility_wins_when_each_day_brings_a_new_level() -> None:
    # Large daily shocks: by mid-day the EWMA has seen today's level, which HAR (built from
    # complete days) learns only at midnight. Neither method wins by construction.
    scores = scores_of(hourly(400, seed=3, persistence=0.9, shock=0.35))
    assert scores[EWMA].winkler < scores[HAR].winkler  # about 6% over seeds 0..5
