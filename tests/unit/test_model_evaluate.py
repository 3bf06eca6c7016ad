from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.baselines import BaselinePredictor, Drift, Ema, Persistence
from cryptopipe_model.evaluate import ModelRun, make_folds, score, walk_forward
from cryptopipe_model.forecast import Forecast
from cryptopipe_model.report import write_report
from cryptopipe_model.stats import (
    binomial_two_sided_p,
    diebold_mariano,
    normal_two_sided_p,
    student_t_two_sided_p,
)

pytestmark = pytest.mark.unit


def test_binomial_two_sided_known_values() -> None:
    assert binomial_two_sided_p(2, 10) == pytest.approx(112 / 1024)
    assert binomial_two_sided_p(8, 10) == pytest.approx(112 / 1024)
    # P(X >= 15) for Bin(20, 1/2) is (C(20,15) + ... + C(20,20)) / 2^20, doubled.
    assert binomial_two_sided_p(15, 20) == pytest.approx(2 * 21700 / 2**20)
    assert binomial_two_sided_p(5, 10) == pytest.approx(1.0)
    assert binomial_two_sided_p(0, 0) == 1.0
    # Large n: close to the normal approximation with continuity correction.
    z = (5300 - 0.5 - 5000) / math.sqrt(2500)
    assert binomial_two_sided_p(5300, 10_000) == pytest.approx(normal_two_sided_p(z), rel=0.02)


def test_student_t_and_normal_tails_known_values() -> None:
    # df = 1 is Cauchy: P(|T| >= 1) = 1/2; df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2).
    assert student_t_two_sided_p(1.0, 1) == pytest.approx(0.5)
    assert student_t_two_sided_p(2.0, 2) == pytest.approx(1 - 2 / math.sqrt(6))
    t = 1.7
    cdf3 = 0.5 + (t / math.sqrt(3) / (1 + t * t / 3) + math.atan(t / math.sqrt(3))) / math.pi
    assert student_t_two_sided_p(t, 3) == pytest.approx(2 * (1 - cdf3))
    assert normal_two_sided_p(1.959964) == pytest.approx(0.05, abs=1e-6)
    assert student_t_two_sided_p(1.959964, 10**7) == pytest.approx(0.05, abs=1e-5)


def _dm_by_hand(d: list[float], h: int) -> float:
    n = len(d)
    mean = sum(d) / n
    gamma = [sum((d[t] - mean) * (d[t - j] - mean) for t in range(j, n)) / n for j in range(h)]
    variance = gamma[0] + 2 * sum(gamma[1:])
    if variance <= 0:
        variance = gamma[0]
    return mean / math.sqrt(variance / n) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)


def test_diebold_mariano_known_values() -> None:
    # d = e_a^2 - e_b^2 = [1, 4, 0, 9]: mean 3.5, gamma0 = 49/4, DM = 2, HLN x sqrt(3/4).
    result = diebold_mariano(np.array([1.0, 2.0, 0.0, 3.0]), np.zeros(4), horizon=1)
    assert result.statistic == pytest.approx(math.sqrt(3))
    assert result.mean_loss_difference == pytest.approx(3.5)
    t = math.sqrt(3)  # t with 3 df, closed form
    cdf3 = 0.5 + (t / math.sqrt(3) / (1 + t * t / 3) + math.atan(t / math.sqrt(3))) / math.pi
    assert result.p_value == pytest.approx(2 * (1 - cdf3))

    # h = 2 with positive lag-1 autocovariance, and one where it is negative enough to fall
    # back to the lag-0 variance.
    a = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 0.0, 0.5])
    b = np.array([0.5, 0.0, 1.0, 1.5, 1.0, 2.0, 0.5, 0.0])
    d = list(a**2 - b**2)
    assert diebold_mariano(a, b, 2).statistic == pytest.approx(_dm_by_hand(d, 2))
    zigzag = np.array([1.0, 2.0, 0.0, 3.0, 1.0, 2.0])
    expected = (19 / 6) / math.sqrt(54.8333333333 / 36) * math.sqrt((7 - 4 + 2 / 6) / 6)
    assert diebold_mariano(zigzag, np.zeros(6), 2).statistic == pytest.approx(expected)
    assert diebold_mariano(b, a, 2).statistic == pytest.approx(-_dm_by_hand(d, 2))


def test_folds_expanding_and_rolling() -> None:
    folds = make_folds(100, horizon=2, test_size=10, n_folds=2)
    assert [list(f.origins) for f in folds] == [[88, 89, 90, 91, 92], [93, 94, 95, 96, 97]]
    assert [(f.train_start, f.train_stop) for f in folds] == [(0, 89), (0, 94)]
    rolling = make_folds(100, horizon=2, test_size=10, n_folds=2, train_size=50)
    assert [(f.train_start, f.train_stop) for f in rolling] == [(39, 89), (44, 94)]
    with pytest.raises(ValueError, match="too few"):
        make_folds(10, horizon=2, test_size=10, n_folds=2)


def _run(name: str, point: list[list[float]], lower: float, upper: float) -> ModelRun:
    p = np.array(point)
    return ModelRun(
        name=name,
        origin=np.array([10, 11, 12, 13]),
        last_close=np.array([100.0, 100.0, 100.0, 100.0]),
        actual=np.array([[102.0, 104.0], [99.0, 97.0], [101.0, 100.0], [100.0, 103.0]]),
        forecast=Forecast(point=p, lower=p - lower, upper=p + upper),
    )


def test_metrics_by_hand() -> None:
    persistence = _run("persistence", [[100.0, 100.0]] * 4, 2.0, 2.0)
    model = _run("m", [[101.0, 103.0], [99.5, 98.0], [99.0, 101.0], [101.0, 102.0]], 1.0, 2.0)
    s = score(model, persistence)
    # Errors: [[1, 1], [-0.5, -1], [2, -1], [-1, 1]]; persistence: [[2, 4], [-1, -3], [1, 0],
    # [0, 3]].
    assert s.overall.mae == pytest.approx(8.5 / 8)
    assert s.overall.rmse == pytest.approx(math.sqrt(10.25 / 8))
    assert s.overall.mase == pytest.approx((8.5 / 8) / (14 / 8))
    assert s.per_step[0].mae == pytest.approx(4.5 / 4)
    assert s.per_step[0].mase == pytest.approx(4.5 / 4)
    assert s.per_step[1].mase == pytest.approx(4 / 10)
    # Directions, step 1: predicted [+, -, -, +], actual [+, -, +, 0]: 2 of 3 counted right.
    assert s.per_step[0].direction_accuracy == pytest.approx(2 / 3)
    assert s.per_step[0].direction_n == 3
    assert s.per_step[0].direction_p == pytest.approx(1.0)
    # Coverage: inside [p - 1, p + 2] unless error < -1 or > 2: step 1 all in (error 2 is on
    # the edge), step 2 all in.
    assert s.per_step[0].coverage == pytest.approx(1.0)
    model_tight = _run("m", model.forecast.point.tolist(), 0.5, 0.5)
    assert score(model_tight, persistence).overall.coverage == pytest.approx(1 / 8)
    assert s.overall.mean_width == pytest.approx(3.0)
    p = score(persistence, persistence).overall
    assert p.mase == 1.0
    assert math.isnan(p.direction_accuracy)
    assert math.isnan(p.dm_statistic)


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, n)))
    return pd.DataFrame(
        {
            "window_start": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "close": close,
        }
    )


def test_walk_forward_with_baselines_and_report(tmp_path: Path) -> None:
    candles = synthetic(600)
    evaluation = walk_forward(
        candles,
        [Drift(3, 0.9), Ema(3, 0.9)],
        horizon=3,
        coverage=0.9,
        test_size=200,
        n_folds=4,
        train_size=300,
    )
    assert list(evaluation.runs) == ["persistence", "drift", "ema"]
    run = evaluation.runs["drift"]
    close = candles["close"].to_numpy()
    assert run.origin[0] == 600 - 3 - 200 and run.origin[-1] == 596
    np.testing.assert_array_equal(run.actual[:, 2], close[run.origin + 3])
    assert evaluation.scores["persistence"].overall.mase == 1.0
    assert 0.7 < evaluation.scores["drift"].overall.coverage <= 1.0
    best = evaluation.best_baseline()
    assert best.overall.mase == min(s.overall.mase for s in evaluation.scores.values())
    summary = evaluation.summary()
    json.dumps(summary, allow_nan=False)
    assert summary["test_origins"] == 200

    folder = tmp_path / "report"
    path = write_report(evaluation, folder, title="Baselines", model="drift")
    text = path.read_text()
    assert "| drift |" in text and "## MASE by horizon step" in text
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in text
    else:
        for name in ("forecast_vs_actual.png", "error_distribution.png", "error_by_horizon.png"):
            assert (folder / name).stat().st_size > 1000


def test_walk_forward_never_fits_on_test_rows() -> None:
    seen: list[int] = []

    class Spy:
        name = "spy"

        def fit(self, train: pd.DataFrame) -> BaselinePredictor:
            seen.append(len(train))
            return Persistence(2, 0.9).fit(train)

    candles = synthetic(120)
    evaluation = walk_forward(candles, [Spy()], horizon=2, coverage=0.9, test_size=20, n_folds=2)
    origins = [f.origins for f in evaluation.folds]
    # Training frames end at each fold's first origin, inclusive.
    assert seen == [int(origins[0][0]) + 1, int(origins[1][0]) + 1]
