from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.features import warmup
from cryptopipe_model.lstm import PREPROCESSING_FILE, WEIGHTS_FILE, LstmModel, LstmPredictor
from cryptopipe_schemas.spec import ModelSpec
from model_support import candle_frame

pytestmark = pytest.mark.unit

SPEC = ModelSpec(
    lookback=8, horizon=3, layers=2, units=4, dropout=0.1, epochs=2, batch_size=32, coverage=0.8
)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return candle_frame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300))), spread=0.004)


@pytest.fixture(scope="module")
def predictor(data: pd.DataFrame) -> LstmPredictor:
    return LstmModel(SPEC, seed=7).fit(data.iloc[:250])


def test_tiny_lstm_trains_and_forecasts_with_ordered_intervals(
    predictor: LstmPredictor, data: pd.DataFrame
) -> None:
    assert 1 <= predictor.info.epochs_run <= SPEC.epochs
    assert predictor.info.train_windows > 0 and predictor.info.validation_windows > 0
    assert predictor.min_history() == warmup() + SPEC.lookback
    origins = np.arange(250, 297)
    forecast = predictor.predict(data, origins)
    assert forecast.point.shape == forecast.lower.shape == forecast.upper.shape == (47, 3)
    assert np.isfinite(forecast.point).all()
    assert (forecast.lower <= forecast.point).all() and (forecast.point <= forecast.upper).all()
    assert (forecast.upper > forecast.lower).any()
    latest = predictor.predict_latest(data)
    assert latest.point.shape == (1, 3)
    with pytest.raises(ValueError, match="needs"):
        predictor.predict(data, np.array([5]))


def test_forecasts_ignore_rows_after_the_origin(
    predictor: LstmPredictor, data: pd.DataFrame
) -> None:
    changed = data.copy()
    changed.loc[271:, ["open", "high", "low", "close", "vwap"]] *= 1.7
    origins = np.arange(250, 271)
    np.testing.assert_array_equal(
        predictor.predict(data, origins).point, predictor.predict(changed, origins).point
    )


def test_artifacts_round_trip_and_seeded_training_repeats(
    predictor: LstmPredictor, data: pd.DataFrame
) -> None:
    files = predictor.artifacts()
    assert set(files) == {WEIGHTS_FILE, PREPROCESSING_FILE}
    restored = LstmPredictor.from_artifacts(files)
    assert restored.spec == SPEC
    assert restored.bands == predictor.bands
    assert restored.feature_scaler == predictor.feature_scaler
    origins = np.arange(260, 270)
    np.testing.assert_allclose(
        restored.predict(data, origins).point, predictor.predict(data, origins).point, rtol=1e-6
    )
    again = LstmModel(SPEC, seed=7).fit(data.iloc[:250])
    np.testing.assert_allclose(
        again.predict(data, origins).point, predictor.predict(data, origins).point, rtol=1e-5
    )


def test_too_little_data_is_refused() -> None:
    rng = np.random.default_rng(1)
    short = candle_frame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 30))), spread=0.004)
    with pytest.raises(ValueError, match="too few"):
        LstmModel(SPEC).fit(short)
