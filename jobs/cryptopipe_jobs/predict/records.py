"""Forecast records (the Forecast Avro schema) from a model's one-origin forecast."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptopipe_model.forecast import Forecast


def forecast_records(
    forecast: Forecast,
    *,
    symbol: str,
    interval: str,
    step: timedelta,
    made_at: datetime,
    coverage: float,
    model: str,
    event_time: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """One record per horizon step from a (1, horizon) forecast; made_at is the window end of
    the origin candle, so step k targets the close of the window ending at made_at + k*step."""
    if forecast.point.shape[0] != 1:
        raise ValueError(f"one origin expected, got {forecast.point.shape[0]}")
    return [
        {
            "symbol": symbol,
            "interval": interval,
            "made_at": made_at,
            "target_time": made_at + k * step,
            "horizon_step": k,
            "point": float(forecast.point[0, k - 1]),
            "lower": float(forecast.lower[0, k - 1]),
            "upper": float(forecast.upper[0, k - 1]),
            "coverage": coverage,
            "model": model,
            "event_time": event_time,
            "ingest_time": now,
        }
        for k in range(1, forecast.horizon + 1)
    ]


def json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """Datetimes -> epoch milliseconds (the Avro timestamp-millis values), for JSON lines."""
    return {
        key: round(value.timestamp() * 1000) if isinstance(value, datetime) else value
        for key, value in record.items()
    }
