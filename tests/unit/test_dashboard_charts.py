"""The dashboard's charts as specs: time axes that tell ticks apart, and the zoomed panel."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptopipe_dashboard import charts

pytestmark = pytest.mark.unit


def _candles(count: int, step: str = "1h") -> pd.DataFrame:
    times = pd.date_range("2026-01-01", periods=count, freq=step, tz="UTC")
    prices = pd.Series(range(count), dtype=float) + 100
    return pd.DataFrame(
        {
            "window_start": times,
            "open": prices,
            "high": prices + 2,
            "low": prices - 2,
            "close": prices + 1,
            "vwap": prices,
            "base_volume": 1.0,
        }
    )


@pytest.mark.parametrize(
    ("hours", "expected"), [(6, "%H:%M"), (30, "%b %d %H:%M"), (24 * 21, "%b %d")]
)
def test_the_time_format_shows_dates_once_a_chart_spans_days(hours: int, expected: str) -> None:
    assert charts.time_format(_candles(hours)["window_start"]) == expected


def test_both_panels_of_the_candle_chart_label_ticks_with_dates_over_weeks() -> None:
    spec = charts.candlestick(_candles(24 * 21), pd.DataFrame()).to_dict()
    formats = [
        layer["encoding"]["x"]["axis"]["format"]
        for panel in spec["vconcat"]
        for layer in panel.get("layer", [panel])
    ]
    assert formats and set(formats) == {"%b %d"}


def test_the_zoomed_panel_holds_the_newest_candles_in_order() -> None:
    shuffled = _candles(100).sample(frac=1, random_state=1)
    zoomed = charts.recent(shuffled)
    assert len(zoomed) == charts.RECENT_CANDLES
    assert zoomed["window_start"].is_monotonic_increasing
    assert zoomed["window_start"].iloc[-1] == shuffled["window_start"].max()
