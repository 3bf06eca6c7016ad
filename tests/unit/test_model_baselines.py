from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.baselines import (
    Ar,
    Drift,
    Ema,
    Persistence,
    all_baselines,
    ar_forecast,
    ema,
    fit_ar,
    make_baseline,
)
from cryptopipe_model.forecast import ResidualBands

pytestmark = pytest.mark.unit


def frame(close: list[float] | np.ndarray) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    return pd.DataFrame(
        {
            "window_start": pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC"),
            "close": close,
        }
    )


def random_walk(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def test_persistence_repeats_the_last_close() -> None:
    train = frame(random_walk(50))
    predictor = Persistence(horizon=3, coverage=0.9).fit(train)
    history = frame([100.0, 110.0, 121.0])
    forecast = predictor.predict(history, np.array([1, 2]))
    np.testing.assert_allclose(forecast.point, [[110.0] * 3, [121.0] * 3])


def test_drift_extrapolates_the_mean_training_log_return() -> None:
    train = frame([100.0, 110.0, 121.0, 133.1, 146.41, 161.051])
    predictor = Drift(horizon=2, coverage=0.9).fit(train)
    assert predictor.params["mu"] == pytest.approx(math.log(1.1))
    forecast = predictor.predict(frame([50.0, 200.0]), np.array([1]))
    np.testing.assert_allclose(forecast.point, [[220.0, 242.0]])
    # The training path is exactly on the drift line: no residuals, zero-width intervals.
    np.testing.assert_allclose(forecast.lower, forecast.point)
    np.testing.assert_allclose(forecast.upper, forecast.point)


def test_ema_by_hand() -> None:
    np.testing.assert_allclose(ema(np.array([10.0, 20.0, 30.0]), span=3), [10.0, 15.0, 22.5])
    predictor = Ema(horizon=2, coverage=0.9, span=3).fit(frame(random_walk(30)))
    forecast = predictor.predict(frame([10.0, 20.0, 30.0]), np.array([2]))
    np.testing.assert_allclose(forecast.point, [[22.5, 22.5]])


def test_ar_recovers_known_coefficients_and_iterates() -> None:
    c, phi = 0.001, 0.5
    returns = [0.02]
    for _ in range(60):
        returns.append(c + phi * returns[-1])
    returns[30] += 0.01  # a shock, so the regressors are not collinear with the intercept
    for t in range(31, 61):
        returns[t] = c + phi * returns[t - 1]
    coefficients = fit_ar(np.array(returns[30:]), 1)
    np.testing.assert_allclose(coefficients, [c, phi], atol=1e-12)

    r1 = c + phi * 0.004
    r2 = c + phi * r1
    np.testing.assert_allclose(ar_forecast(coefficients, np.array([[0.004]]), 2), [[r1, r2]])
    # AR(2) iteration: phi_1 multiplies the latest return.
    two = np.array([0.0, 0.5, 0.25])
    np.testing.assert_allclose(
        ar_forecast(two, np.array([[0.1, 0.2]]), 2), [[0.5 * 0.2 + 0.25 * 0.1, 0.5 * 0.125 + 0.05]]
    )

    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns[30:])]))
    predictor = Ar(horizon=2, coverage=0.9, p=1).fit(frame(close))
    forecast = predictor.predict(frame(close), np.array([len(close) - 1]))
    last_return = math.log(close[-1] / close[-2])
    step1 = c + phi * last_return
    step2 = c + phi * step1
    np.testing.assert_allclose(
        forecast.point, [[close[-1] * math.exp(step1), close[-1] * math.exp(step1 + step2)]]
    )


def test_residual_bands_by_hand() -> None:
    residuals = np.arange(-50.0, 50.0)[:, None]  # n = 100
    bands = ResidualBands.fit(residuals, coverage=0.9)
    # ceil(101 * 0.95) / 100 = 0.96 -> linear quantile of -50..49 at 0.96 and 0.04.
    assert bands.upper == pytest.approx((45.04,))
    assert bands.lower == pytest.approx((-46.04,))
    # Bounds always straddle zero, so the point stays inside its interval.
    shifted = ResidualBands.fit(residuals + 60.0, coverage=0.9)
    assert shifted.lower == (0.0,)


def test_intervals_are_ordered_and_cover_training_spread() -> None:
    close = random_walk(400, seed=3)
    train, history = frame(close[:300]), frame(close)
    origins = np.arange(300, 395)
    for model in all_baselines(horizon=4, coverage=0.8):
        forecast = model.fit(train).predict(history, origins)
        assert forecast.point.shape == (95, 4)
        assert (forecast.lower <= forecast.point).all()
        assert (forecast.point <= forecast.upper).all()
        # Wider intervals further ahead for a random walk.
        width = (forecast.upper - forecast.lower).mean(axis=0)
        assert width[-1] > width[0], model.name


def test_predict_uses_only_rows_up_to_each_origin() -> None:
    close = random_walk(200, seed=5)
    changed = close.copy()
    changed[151:] *= 1.5
    for model in all_baselines(horizon=3, coverage=0.9):
        predictor = model.fit(frame(close[:120]))
        a = predictor.predict(frame(close), np.arange(120, 151))
        b = predictor.predict(frame(changed), np.arange(120, 151))
        np.testing.assert_array_equal(a.point, b.point)


def test_make_baseline_rejects_unknown_names() -> None:
    assert make_baseline("ar", 3, 0.9).name == "ar"
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("prophet", 3, 0.9)
