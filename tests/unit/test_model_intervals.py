"""Prediction intervals: the causal volatility estimate and volatility-scaled residual bands."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.baselines import Persistence
from cryptopipe_model.features import FloatArray, future_log_returns
from cryptopipe_model.forecast import ResidualBands, to_prices
from cryptopipe_model.volatility import ewma_volatility

pytestmark = pytest.mark.unit


def test_ewma_volatility_by_hand() -> None:
    # Log returns 0.1, 0, 0.3; half-life 1 row: each older square weighs half the next one.
    close = np.exp(np.array([0.0, 0.1, 0.1, 0.4]))
    volatility = ewma_volatility(close, halflife=1.0)
    assert math.isnan(volatility[0])
    np.testing.assert_allclose(
        volatility[1:],
        [0.1, math.sqrt(0.5 * 0.01 / 1.5), math.sqrt((0.25 * 0.01 + 0.09) / 1.75)],
    )
    with pytest.raises(ValueError, match="halflife"):
        ewma_volatility(close, halflife=0.0)


def test_ewma_volatility_is_causal() -> None:
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    changed = close.copy()
    changed[201:] *= np.exp(rng.normal(0, 0.2, 99))
    np.testing.assert_array_equal(ewma_volatility(close)[:201], ewma_volatility(changed)[:201])
    assert not np.allclose(ewma_volatility(close)[201:], ewma_volatility(changed)[201:])


def test_scaled_bands_by_hand() -> None:
    z = np.arange(-50.0, 50.0)  # n = 100: quantiles 45.04 and -46.04 (test_model_baselines)
    volatility = np.linspace(0.5, 3.0, 100)
    residuals = (z * volatility)[:, None]
    bands = ResidualBands.fit_scaled(residuals, volatility, coverage=0.9, halflife=7.0)
    assert bands.upper == pytest.approx((45.04,))
    assert bands.lower == pytest.approx((-46.04,))
    assert bands.halflife == 7.0
    # Origins without a volatility (no return yet, or a flat market) are left out.
    padded = ResidualBands.fit_scaled(
        np.vstack([[[1e6]], [[-1e6]], residuals]),
        np.concatenate([[math.nan, 0.0], volatility]),
        coverage=0.9,
        halflife=7.0,
    )
    assert padded == bands
    with pytest.raises(ValueError, match="no residuals"):
        ResidualBands.fit_scaled(residuals[:2], np.array([math.nan, 0.0]), coverage=0.9)


def test_band_widths_follow_the_volatility_at_the_origin() -> None:
    bands = ResidualBands(lower=(-1.0, -2.0), upper=(2.0, 3.0), halflife=1.0)
    close = np.exp(np.array([0.0, 0.1, 0.1, 0.4]))
    sigma = ewma_volatility(close, 1.0)
    origins = np.array([1, 3], dtype=np.int64)
    log_returns = np.array([[0.01, 0.02], [0.0, -0.01]])
    forecast = to_prices(close, origins, log_returns, bands)
    base = close[origins][:, None]
    np.testing.assert_allclose(forecast.point, base * np.exp(log_returns))
    scale = sigma[origins][:, None]
    np.testing.assert_allclose(
        forecast.lower, base * np.exp(log_returns + scale * np.array([-1.0, -2.0]))
    )
    np.testing.assert_allclose(
        forecast.upper, base * np.exp(log_returns + scale * np.array([2.0, 3.0]))
    )
    # Plain bands add the same offsets whatever the market does.
    plain = to_prices(close, origins, log_returns, ResidualBands((-1.0, -2.0), (2.0, 3.0)))
    np.testing.assert_allclose(plain.upper, base * np.exp(log_returns + np.array([2.0, 3.0])))
    assert bands.min_history() == 2 and ResidualBands((0.0,), (0.0,)).min_history() == 1


def test_bands_json_round_trip_and_saved_plain_bands() -> None:
    bands = ResidualBands((-1.5, -2.5), (1.0, 2.0), 12.0)
    assert ResidualBands.from_json(bands.to_json()) == bands
    # A version saved before scaling existed has no half-life: its bands stay plain.
    old = ResidualBands.from_json({"lower": [-0.01], "upper": [0.02]})
    assert old == ResidualBands((-0.01,), (0.02,), None)


def garch(n: int, seed: int) -> tuple[FloatArray, FloatArray]:
    """Closes from GARCH(1,1) log returns, and each return's true volatility."""
    rng = np.random.default_rng(seed)
    omega, alpha, beta = 1e-6, 0.1, 0.85
    variance = omega / (1 - alpha - beta)
    returns, sigma = np.empty(n), np.empty(n)
    for t in range(n):
        sigma[t] = math.sqrt(variance)
        returns[t] = sigma[t] * rng.standard_normal()
        variance = omega + alpha * returns[t] ** 2 + beta * variance
    return 100 * np.exp(np.cumsum(returns)), sigma


def test_scaled_intervals_cover_near_nominal_in_calm_and_turbulent_times() -> None:
    n, split, horizon, coverage = 12_000, 6_000, 3, 0.9
    close, sigma = garch(n, seed=0)
    candles = pd.DataFrame(
        {
            "window_start": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "close": close,
        }
    )
    origins = np.arange(split, n - horizon, dtype=np.int64)
    actual = close[origins[:, None] + np.arange(1, horizon + 1)[None, :]]
    # Persistence calibrated on the first half, scored on the second, through the baseline.
    forecast = Persistence(horizon, coverage).fit(candles.iloc[:split]).predict(candles, origins)
    scaled = (actual >= forecast.lower) & (actual <= forecast.upper)
    # The plain method on the same residuals.
    train_origins = np.arange(0, split - horizon, dtype=np.int64)
    plain_bands = ResidualBands.fit(future_log_returns(close, train_origins, horizon), coverage)
    realized = future_log_returns(close, origins, horizon)
    plain = (realized >= np.array(plain_bands.lower)) & (realized <= np.array(plain_bands.upper))

    upcoming = sigma[origins + 1]  # the true volatility of the first step ahead
    calm = upcoming <= np.quantile(upcoming, 1 / 3)
    turbulent = upcoming >= np.quantile(upcoming, 2 / 3)
    for part in (calm, turbulent, np.ones(len(origins), dtype=bool)):
        assert abs(scaled[part].mean() - coverage) < 0.03
    assert plain[calm].mean() > coverage + 0.04  # too wide when calm
    assert plain[turbulent].mean() < coverage - 0.05  # too narrow when it matters

    # A regime change after calibration (three times the volatility): plain bands collapse.
    returns = np.diff(np.log(close))
    returns[split - 1 :] *= 3
    wild = close[0] * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    candles["close"] = wild
    forecast = Persistence(horizon, coverage).fit(candles.iloc[:split]).predict(candles, origins)
    actual = wild[origins[:, None] + np.arange(1, horizon + 1)[None, :]]
    assert abs(((actual >= forecast.lower) & (actual <= forecast.upper)).mean() - coverage) < 0.03
    realized = future_log_returns(wild, origins, horizon)
    plain = (realized >= np.array(plain_bands.lower)) & (realized <= np.array(plain_bands.upper))
    assert plain.mean() < coverage - 0.2
