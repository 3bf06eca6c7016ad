"""cryptopipe forecasting: features, LSTM, baselines, evaluation, model registry."""
