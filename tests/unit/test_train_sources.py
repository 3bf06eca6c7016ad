from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cryptopipe_jobs.producer.recorded import Kline
from cryptopipe_jobs.train import sources
from cryptopipe_jobs.train.plan import lstm_fit_windows, min_training_rows
from cryptopipe_model.features import CANDLE_COLUMNS, CandleDataError, check_candles
from cryptopipe_model.lstm import LstmModel
from cryptopipe_schemas.spec import ModelSpec

pytestmark = pytest.mark.unit


def kline(open_ms: int, quote: Decimal | None) -> Kline:
    return Kline(
        open_time_ms=open_ms,
        close_time_ms=open_ms + 3_599_999,
        open=Decimal("100"),
        high=Decimal("110"),
        low=Decimal("90"),
        close=Decimal("104"),
        volume=Decimal("2"),
        quote_volume=quote,
        trade_count=None,
    )


def test_klines_become_candles_with_vwap_from_volumes_or_the_typical_price() -> None:
    frame = sources.klines_to_frame([kline(0, Decimal("203")), kline(3_600_000, None)])
    assert list(frame.columns) == list(CANDLE_COLUMNS)
    assert frame["vwap"].tolist() == [101.5, pytest.approx((110 + 90 + 104) / 3)]
    assert frame["window_start"].tolist() == [
        pd.Timestamp("1970-01-01T00:00Z"),
        pd.Timestamp("1970-01-01T01:00Z"),
    ]
    assert frame["trade_count"].tolist() == [0, 0]


def test_embedded_data_is_one_clean_hourly_series() -> None:
    frame = sources.read_embedded()
    assert len(frame) > 20_000
    check_candles(frame, pd.Timedelta(hours=1))


def candle_table(starts_ms: list[int], closes: list[float], final: list[bool]) -> pa.Table:
    n = len(starts_ms)
    return pa.table(
        {
            "symbol": ["BTCUSDT"] * n,
            "window_start": pa.array(starts_ms, pa.timestamp("ms", tz="UTC")),
            "open": closes,
            "high": [c + 1 for c in closes],
            "low": [c - 1 for c in closes],
            "close": closes,
            "base_volume": [1.0] * n,
            "quote_volume": closes,
            "vwap": closes,
            "trade_count": [3] * n,
            "is_final": final,
        }
    )


def test_parquet_folder_in_partition_layout_is_deduplicated_final_and_sorted(
    tmp_path: Path,
) -> None:
    hour = 3_600_000
    day1 = tmp_path / "date=2024-01-01"
    day2 = tmp_path / "date=2024-01-02"
    day1.mkdir()
    day2.mkdir()
    pq.write_table(
        candle_table([2 * hour, 0, hour], [30.0, 10.0, 20.0], [True] * 3), day1 / "a.parquet"
    )
    # A redelivered copy, a non-final candle, and Spark's marker files.
    pq.write_table(candle_table([hour, 3 * hour], [20.0, 90.0], [True, False]), day2 / "b.parquet")
    (day2 / "_SUCCESS").write_text("")
    frame = sources.read_local(tmp_path)
    assert frame["close"].tolist() == [10.0, 20.0, 30.0]
    assert frame["window_start"].is_monotonic_increasing
    check_candles(frame, pd.Timedelta(hours=1))


def test_an_empty_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(CandleDataError, match="no parquet files"):
        sources.read_local(tmp_path)


def test_candle_csv_with_epoch_milliseconds(tmp_path: Path) -> None:
    table = candle_table([0, 3_600_000], [1.0, 2.0], [True, True]).to_pandas()
    table["window_start"] = [0, 3_600_000]
    path = tmp_path / "candles.csv"
    table.to_csv(path, index=False)
    frame = sources.read_local(path)
    assert frame["window_start"].tolist()[1] == pd.Timestamp("1970-01-01T01:00Z")


def test_row_plan_matches_what_the_lstm_actually_trains_on() -> None:
    spec = ModelSpec(lookback=8, horizon=3, layers=1, units=2, epochs=1, batch_size=64)
    rows = min_training_rows(spec, 0.2)
    frame = sources.read_embedded().iloc[:rows]
    predictor = LstmModel(spec).fit(frame)
    assert predictor.info.train_windows == lstm_fit_windows(rows, spec, 0.2)
    assert lstm_fit_windows(rows - 1, spec, 0.2) < lstm_fit_windows(rows, spec, 0.2)
    assert np.isfinite(predictor.info.best_validation_loss)
