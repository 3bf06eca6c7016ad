from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.features import FloatArray
from cryptopipe_model.har import (
    HAR_WINDOWS,
    Ewma,
    Har,
    Naive,
    VolatilityModel,
    default_models,
    ewma,
    fit_har,
    har_components,
)
from cryptopipe_model.volatility_evaluate import walk_forward_volatility

pytestmark = pytest.mark.unit

MODELS: list[VolatilityModel] = [*default_models(), Har(log=False, name="har_levels")]


def daily_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Consecutive days with a persistent log variance and returns drawn from it."""
    rng = np.random.default_rng(seed)
    log_rv = np.empty(n)
    log_rv[0] = -7.0
    for t in range(1, n):
        log_rv[t] = -7.0 + 0.9 * (log_rv[t - 1] + 7.0) + rng.normal(0.0, 0.5)
    rv = np.exp(log_rv)
    ret = rng.normal(0.0, 1.0, n) * np.sqrt(rv)
    index = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame({"rv": rv, "rvol": np.sqrt(rv), "ret": ret, "n": 24}, index=index)


def perturbed_after(daily: pd.DataFrame, origin: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    changed = daily.copy()
    later = np.arange(len(daily)) > origin
    changed.loc[later, "rv"] = daily["rv"][later] * rng.uniform(0.1, 10.0, int(later.sum()))
    changed.loc[later, "ret"] = rng.normal(0.0, 0.2, int(later.sum()))
    return changed


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_forecast_at_an_origin_ignores_every_later_row(model: VolatilityModel) -> None:
    daily = daily_frame(300)
    predictor = model.fit(daily.iloc[:150])
    for origin in (30, 149, 200, 298):
        changed = perturbed_after(daily, origin)
        # The fit may only see rows up to its training stop; refit on the changed frame too.
        refit = model.fit(changed.iloc[:150]) if origin >= 149 else predictor
        origins = np.array([origin], dtype=np.int64)
        np.testing.assert_array_equal(
            refit.predict(changed, origins), predictor.predict(daily, origins)
        )


def test_walk_forward_forecasts_up_to_an_origin_ignore_later_rows() -> None:
    daily = daily_frame(400)
    before = walk_forward_volatility(daily, MODELS, test_size=200, n_folds=5)
    origins = np.arange(len(daily))[-201:-1]
    for cut in (origins[0], origins[57], origins[120], origins[-2]):
        after = walk_forward_volatility(perturbed_after(daily, cut), MODELS, test_size=200)
        kept = origins <= cut
        assert kept.sum() >= 1
        for name, forecast in before.forecasts.items():
            np.testing.assert_array_equal(after.forecasts[name][kept], forecast[kept])
        # Sanity: later forecasts do change, so the test would catch a leak.
        assert not np.array_equal(after.forecasts["har"], before.forecasts["har"])


def test_naive_and_ewma_recursions() -> None:
    daily = daily_frame(10)
    rv = daily["rv"].to_numpy()
    origins = np.arange(10, dtype=np.int64)
    np.testing.assert_array_equal(Naive().fit(daily).predict(daily, origins), rv)
    expected = [rv[0]]
    for value in rv[1:]:
        expected.append(0.94 * expected[-1] + 0.06 * value)
    assert Ewma().fit(daily).predict(daily, origins) == pytest.approx(expected, rel=1e-12)
    squared = daily["ret"].to_numpy() ** 2
    assert Ewma(source="r2").predict(daily, origins) == pytest.approx(
        ewma(squared, 0.94), rel=1e-12
    )
    with pytest.raises(ValueError, match="lambda"):
        ewma(squared, 1.0)


def test_har_components_are_trailing_means() -> None:
    rv = np.arange(1.0, 31.0)
    components = har_components(rv)
    assert np.isnan(components[3, 1]) and np.isnan(components[20, 2])
    t = 25
    assert components[t].tolist() == pytest.approx(
        [rv[t], rv[t - 4 : t + 1].mean(), rv[t - 21 : t + 1].mean()]
    )


def simulate_log_har(beta: tuple[float, float, float, float], sd: float, n: int) -> FloatArray:
    rng = np.random.default_rng(42)
    b0, bd, bw, bm = beta
    rv = list(np.exp(rng.normal(-7.0, 0.5, HAR_WINDOWS[-1])))
    for _ in range(n):
        recent = np.asarray(rv[-HAR_WINDOWS[-1] :])
        mean = (
            b0
            + bd * np.log(recent[-1])
            + bw * np.log(recent[-5:].mean())
            + bm * np.log(recent.mean())
        )
        rv.append(float(np.exp(mean + rng.normal(0.0, sd))))
    return np.asarray(rv)


def test_log_har_ols_recovers_known_coefficients() -> None:
    # The intercept sets the mean log RV near -1, where its estimate is about as precise as the
    # slopes (near -7, as for real daily RV, it trades off against them).
    beta = (-0.1, 0.35, 0.3, 0.25)
    rv = simulate_log_har(beta, sd=0.3, n=20_000)
    fitted = fit_har(rv)
    assert fitted.coefficients == pytest.approx(beta, abs=0.03)
    assert fitted.residual_variance == pytest.approx(0.09, rel=0.05)
    assert fitted.n_pairs == len(rv) - HAR_WINDOWS[-1]
    # The forecast is the lognormal mean: exp(linear prediction + s^2 / 2).
    daily = pd.DataFrame({"rv": rv})
    origin = np.array([len(rv) - 1], dtype=np.int64)
    components = np.log(har_components(rv)[-1])
    linear = fitted.coefficients[0] + components @ np.asarray(fitted.coefficients[1:])
    assert fitted.predict(daily, origin) == pytest.approx(
        np.exp(linear + fitted.residual_variance / 2), rel=1e-12
    )


def test_levels_har_ols_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(7)
    beta = (2e-4, 0.4, 0.3, 0.2)
    rv = list(rng.uniform(5e-4, 3e-3, HAR_WINDOWS[-1]))
    for _ in range(20_000):
        recent = np.asarray(rv[-HAR_WINDOWS[-1] :])
        mean = beta[0] + beta[1] * recent[-1] + beta[2] * recent[-5:].mean()
        mean += beta[3] * recent.mean()
        rv.append(float(mean * rng.lognormal(-0.125, 0.5)))
    fitted = fit_har(np.asarray(rv), log=False)
    assert fitted.coefficients == pytest.approx(beta, abs=0.05, rel=0.1)


def test_har_refuses_too_little_data_and_early_origins() -> None:
    with pytest.raises(ValueError, match="HAR needs"):
        fit_har(np.full(40, 1e-3))
    fitted = Har().fit(daily_frame(200))
    with pytest.raises(ValueError, match="HAR needs"):
        fitted.predict(daily_frame(200), np.array([10], dtype=np.int64))
