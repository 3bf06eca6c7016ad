"""A Keras LSTM forecaster built from ModelSpec (layers, units, dropout, learning rate, epochs,
batch size, lookback, horizon, coverage).

Input: `lookback` rows of standardized candle features; output: `horizon` standardized
cumulative log returns (see features.py), trained with mean squared error.

Prediction intervals: residual-calibrated on a validation split, not quantile heads. The last
`validation_fraction` of the training windows is held out (training windows whose targets
reach into it are purged); it drives early stopping (best weights restored) and then, from its
residuals divided by the volatility at their origins, per-step empirical quantiles at the
spec's coverage, scaled by the volatility at each forecast origin (`ResidualBands`). One MSE head
is easier to train well than three pinball heads on noisy returns, its intervals can never
cross, and the coverage it promises is checked out of sample by the walk-forward evaluation.
The same held-out data serves both purposes: choosing one epoch barely biases its residuals.

Fixed seeds (`keras.utils.set_random_seed`) and CPU only.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from cryptopipe_model.features import (
    FEATURE_COLUMNS,
    VOLUME_WINDOW,
    FloatArray,
    IntArray,
    StandardScaler,
    feature_matrix,
    make_windows,
    warmup,
    window_inputs,
)
from cryptopipe_model.forecast import Forecast, ResidualBands, to_prices
from cryptopipe_model.volatility import VOLATILITY_HALFLIFE, ewma_volatility
from cryptopipe_schemas.spec import ModelSpec

WEIGHTS_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
PREDICT_BATCH = 1024


@contextlib.contextmanager
def _quiet_keras_io() -> Iterator[None]:
    # Keras 3 on numpy 2 warns about TensorFlow's own __array__ when saving or loading weights.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        yield


def use_cpu_only() -> None:
    """Hide GPUs from TensorFlow; too late once TensorFlow has initialized its devices."""
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")


def build_network(spec: ModelSpec, n_features: int) -> Any:
    inputs = keras.Input(shape=(spec.lookback, n_features))
    x = inputs
    for layer in range(spec.layers):
        x = keras.layers.LSTM(spec.units, return_sequences=layer < spec.layers - 1)(x)
        if spec.dropout > 0:
            x = keras.layers.Dropout(spec.dropout)(x)
    outputs = keras.layers.Dense(spec.horizon)(x)
    network = keras.Model(inputs, outputs, name="lstm_forecaster")
    network.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate), loss="mse")
    return network


@dataclass(frozen=True)
class TrainingInfo:
    train_windows: int
    validation_windows: int
    epochs_run: int
    best_epoch: int
    best_validation_loss: float


@dataclass(frozen=True)
class LstmModel:
    """Unfitted LSTM forecaster; `fit` trains on a candle frame and returns an LstmPredictor."""

    spec: ModelSpec
    seed: int = 0
    validation_fraction: float = 0.2
    patience: int = 3
    volume_window: int = VOLUME_WINDOW
    volatility_halflife: float = VOLATILITY_HALFLIFE
    verbose: int = 0
    name: str = "lstm"

    def fit(self, train: pd.DataFrame) -> LstmPredictor:
        use_cpu_only()
        keras.utils.set_random_seed(self.seed)
        spec = self.spec
        features = feature_matrix(train, self.volume_window)
        close = train["close"].to_numpy(dtype=float)
        windows = make_windows(features, close, spec.lookback, spec.horizon)
        n = len(windows.origin)
        n_validation = max(1, int(n * self.validation_fraction))
        fit_count = n - n_validation - spec.horizon  # purge: targets must not reach validation
        if fit_count < 1:
            raise ValueError(
                f"{len(train)} rows give {n} windows: too few to train and validate "
                f"(lookback {spec.lookback}, horizon {spec.horizon})"
            )
        fit_x, fit_y = windows.x[:fit_count], windows.y[:fit_count]
        val_x, val_y = windows.x[n - n_validation :], windows.y[n - n_validation :]
        last_fit_row = int(windows.origin[fit_count - 1])
        first_row = int(windows.origin[0]) - spec.lookback + 1
        feature_scaler = StandardScaler.fit(features[first_row : last_fit_row + 1])
        target_scaler = StandardScaler.fit(fit_y)
        network = build_network(spec, features.shape[1])
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.patience, restore_best_weights=True
        )
        history = network.fit(
            feature_scaler.transform(fit_x),
            target_scaler.transform(fit_y),
            validation_data=(feature_scaler.transform(val_x), target_scaler.transform(val_y)),
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            shuffle=True,
            callbacks=[stopper],
            verbose=self.verbose,
        )
        losses = [float(v) for v in history.history["val_loss"]]
        best = int(np.argmin(losses))
        predictor = LstmPredictor(
            spec=spec,
            network=network,
            feature_scaler=feature_scaler,
            target_scaler=target_scaler,
            bands=ResidualBands((0.0,) * spec.horizon, (0.0,) * spec.horizon),
            volume_window=self.volume_window,
            info=TrainingInfo(fit_count, n_validation, len(losses), best + 1, losses[best]),
            name=self.name,
        )
        residuals = val_y - predictor.predict_log_returns(val_x)
        volatility = ewma_volatility(close, self.volatility_halflife)[
            windows.origin[n - n_validation :]
        ]
        bands = ResidualBands.fit_scaled(
            residuals, volatility, spec.coverage, self.volatility_halflife
        )
        return replace(predictor, bands=bands)


@dataclass(frozen=True)
class LstmPredictor:
    spec: ModelSpec
    network: Any = field(repr=False)
    feature_scaler: StandardScaler
    target_scaler: StandardScaler
    bands: ResidualBands
    volume_window: int
    info: TrainingInfo
    name: str = "lstm"
    # The network traced once into a graph for any batch size: called eagerly, an LSTM runs its
    # time loop op by op, about 50 times slower for one window (280 ms against 5 ms on 2 cores);
    # the concrete function also skips tf.function's per-call signature matching.
    _forward: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        network = self.network
        shape = (None, self.spec.lookback, len(FEATURE_COLUMNS))
        traced = tf.function(lambda x: network(x, training=False)).get_concrete_function(
            tf.TensorSpec(shape, tf.float32)
        )
        object.__setattr__(self, "_forward", traced)

    def min_history(self) -> int:
        return max(warmup(self.volume_window) + self.spec.lookback, self.bands.min_history())

    def predict_log_returns(self, x: FloatArray) -> FloatArray:
        """Raw (unscaled) windows (n, lookback, f) -> cumulative log returns (n, horizon)."""
        scaled = self.feature_scaler.transform(x).astype(np.float32)
        outputs = [
            np.asarray(self._forward(tf.convert_to_tensor(scaled[i : i + PREDICT_BATCH])))
            for i in range(0, len(scaled), PREDICT_BATCH)
        ]
        if not outputs:
            return np.zeros((0, self.spec.horizon))
        return self.target_scaler.inverse(np.concatenate(outputs).astype(np.float64))

    def predict(self, candles: pd.DataFrame, origins: IntArray) -> Forecast:
        origins = np.asarray(origins, dtype=np.int64)
        if len(origins) and origins.min() < self.min_history() - 1:
            raise ValueError(f"{self.name} needs {self.min_history()} rows before an origin")
        if not len(origins):
            return to_prices(np.zeros(0), origins, np.zeros((0, self.spec.horizon)), self.bands)
        # Features are past-only and reach back volume_window rows: the rows from the first
        # window's start minus that, up to the last origin, are all they need.
        first = max(0, int(origins.min()) - self.spec.lookback - self.volume_window)
        frame = candles.iloc[first : int(origins.max()) + 1]
        features = feature_matrix(frame, self.volume_window)
        x = window_inputs(features, origins - first, self.spec.lookback)
        close = candles["close"].to_numpy(dtype=float)
        return to_prices(close, origins, self.predict_log_returns(x), self.bands)

    def predict_latest(self, candles: pd.DataFrame) -> Forecast:
        """One forecast from the last row of `candles`: shape (1, horizon)."""
        return self.predict(candles, np.array([len(candles) - 1], dtype=np.int64))

    def artifacts(self) -> dict[str, bytes]:
        """Files that restore this predictor: the Keras weights and the preprocessing JSON."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / WEIGHTS_FILE
            with _quiet_keras_io():
                self.network.save(path)
            weights = path.read_bytes()
        preprocessing = {
            "name": self.name,
            "spec": asdict(self.spec),
            "features": list(FEATURE_COLUMNS),
            "volume_window": self.volume_window,
            "feature_scaler": self.feature_scaler.to_json(),
            "target_scaler": self.target_scaler.to_json(),
            "bands": self.bands.to_json(),
            "training": asdict(self.info),
        }
        return {
            WEIGHTS_FILE: weights,
            PREPROCESSING_FILE: json.dumps(preprocessing, indent=2).encode(),
        }

    @classmethod
    def from_artifacts(cls, files: dict[str, bytes]) -> LstmPredictor:
        data = json.loads(files[PREPROCESSING_FILE])
        if tuple(data["features"]) != FEATURE_COLUMNS:
            raise ValueError(f"saved model uses features {data['features']}, not ours")
        use_cpu_only()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / WEIGHTS_FILE
            path.write_bytes(files[WEIGHTS_FILE])
            with _quiet_keras_io():
                network = keras.saving.load_model(path, compile=False)
        return cls(
            spec=ModelSpec(**data["spec"]),
            network=network,
            feature_scaler=StandardScaler.from_json(data["feature_scaler"]),
            target_scaler=StandardScaler.from_json(data["target_scaler"]),
            bands=ResidualBands.from_json(data["bands"]),
            volume_window=int(data["volume_window"]),
            info=TrainingInfo(**data["training"]),
            name=str(data["name"]),
        )
