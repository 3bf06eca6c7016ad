from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryptopipe_jobs.predict.history import Added, CandleHistory
from cryptopipe_jobs.predict.records import forecast_records, json_ready
from cryptopipe_model.forecast import Forecast

pytestmark = pytest.mark.unit

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def record(hour: int, close: float = 100.0, **changes: Any) -> dict[str, Any]:
    start = T0 + hour * HOUR
    base = {
        "symbol": "BTCUSDT",
        "interval": "1h",
        "window_start": start,
        "window_end": start + HOUR,
        "open": close,
        "high": close + 1,
        "low": close - 1,
        "close": close,
        "base_volume": 1.0,
        "quote_volume": close,
        "vwap": close,
        "trade_count": 1,
        "is_final": True,
        "event_time": start + HOUR - dt.timedelta(seconds=1),
    }
    return {**base, **changes}


def history(capacity: int = 10) -> CandleHistory:
    return CandleHistory("BTCUSDT", pd.Timedelta(hours=1), capacity)


def test_dedupes_by_window_start_and_refuses_non_final_and_other_streams() -> None:
    h = history()
    assert h.add(record(0, 1.0), "1h") is Added.NEWEST
    assert h.add(record(1, 2.0), "1h") is Added.NEWEST
    assert h.add(record(1, 9.0), "1h") is Added.DUPLICATE
    assert h.add(record(2, 9.0, is_final=False), "1h") is Added.NOT_FINAL
    assert h.add(record(2, 9.0, symbol="ETHUSDT"), "1h") is Added.OTHER_STREAM
    assert h.add(record(2, 9.0, interval="1m"), "1h") is Added.OTHER_STREAM
    assert h.contiguous_frame()["close"].tolist() == [1.0, 2.0]


def test_forecasts_use_only_the_newest_run_of_consecutive_candles() -> None:
    h = history()
    for hour in (0, 1, 3, 4):
        h.add(record(hour, float(hour + 1)), "1h")
    assert h.contiguous_frame()["close"].tolist() == [4.0, 5.0]
    assert h.add(record(2, 3.0), "1h") is Added.OLDER  # late, fills the gap
    assert h.contiguous_frame()["close"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_keeps_at_most_capacity_newest_candles() -> None:
    h = history(capacity=3)
    for hour in range(6):
        h.add(record(hour, float(hour + 1)), "1h")
    assert len(h) == 3
    assert h.contiguous_frame()["close"].tolist() == [4.0, 5.0, 6.0]
    assert h.add(record(0, 1.0), "1h") is Added.OLDER  # older than all kept: dropped
    assert len(h) == 3


def test_one_record_per_step_with_target_times() -> None:
    forecast = Forecast(
        point=np.array([[10.0, 11.0]]), lower=np.array([[9.0, 9.5]]), upper=np.array([[12.0, 13.0]])
    )
    made_at = T0 + HOUR
    records = forecast_records(
        forecast,
        symbol="BTCUSDT",
        interval="1h",
        step=HOUR,
        made_at=made_at,
        coverage=0.9,
        model="ar",
        event_time=T0,
        now=T0 + 2 * HOUR,
    )
    assert [(r["horizon_step"], r["target_time"], r["point"]) for r in records] == [
        (1, made_at + HOUR, 10.0),
        (2, made_at + 2 * HOUR, 11.0),
    ]
    assert json_ready(records[0])["made_at"] == 1_704_070_800_000
