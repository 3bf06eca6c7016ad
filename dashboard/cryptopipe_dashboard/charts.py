"""Altair charts built from data frames (pure: frames in, chart specs out)."""

from __future__ import annotations

import altair as alt
import pandas as pd

UP, DOWN, FORECAST = "#26a69a", "#ef5350", "#5c6bc0"
RECENT_CANDLES = 48


def time_format(*columns: pd.Series) -> str:
    """A tick label format that tells ticks apart over the span shown: dates when it spans
    days (Vega's default shows "12 PM" under every daily tick), times within a day."""
    times = pd.concat([pd.to_datetime(column) for column in columns if not column.empty])
    span = times.max() - times.min() if not times.empty else pd.Timedelta(0)
    if span > pd.Timedelta(days=3):
        return "%b %d"
    if span > pd.Timedelta(hours=18):
        return "%b %d %H:%M"
    return "%H:%M"


def recent(candles: pd.DataFrame, last: int = RECENT_CANDLES) -> pd.DataFrame:
    """The newest `last` candles: the zoomed panel where the forecast is wide enough to read."""
    return candles.sort_values("window_start").tail(last)


_NO_TIMES = pd.Series([], dtype="datetime64[ns, UTC]")


def latest_forecast_path(forecasts: pd.DataFrame) -> pd.DataFrame:
    """The newest forecast run: one row per horizon step."""
    if forecasts.empty:
        return forecasts
    newest = forecasts["made_at"].max()
    return forecasts[forecasts["made_at"] == newest].sort_values("horizon_step")


def candlestick(candles: pd.DataFrame, forecasts: pd.DataFrame) -> alt.VConcatChart:
    data = candles.assign(
        direction=(candles["close"] >= candles["open"]).map({True: "up", False: "down"})
    )
    colour = alt.Color(
        "direction:N", scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]), legend=None
    )
    path = latest_forecast_path(forecasts)
    axis = alt.Axis(format=time_format(data["window_start"], path.get("target_time", _NO_TIMES)))
    time = alt.X("window_start:T", title=None, axis=axis)
    wick = (
        alt.Chart(data)
        .mark_rule()
        .encode(
            time,
            alt.Y("low:Q", scale=alt.Scale(zero=False), title="price"),
            alt.Y2("high:Q"),
            colour,
        )
    )
    body = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            time,
            alt.Y("open:Q"),
            alt.Y2("close:Q"),
            colour,
            tooltip=["window_start:T", "open", "high", "low", "close", "vwap"],
        )
    )
    layers: list[alt.Chart] = [wick, body]
    if not path.empty:
        target = alt.X("target_time:T", axis=axis)
        band = (
            alt.Chart(path)
            .mark_area(opacity=0.2, color=FORECAST)
            .encode(target, alt.Y("lower:Q"), alt.Y2("upper:Q"))
        )
        line = (
            alt.Chart(path)
            .mark_line(point=True, color=FORECAST)
            .encode(
                target,
                alt.Y("point:Q"),
                tooltip=["target_time:T", "horizon_step", "point", "lower", "upper", "model"],
            )
        )
        layers += [band, line]
    price = alt.layer(*layers).properties(height=360)
    volume = (
        alt.Chart(data)
        .mark_bar()
        .encode(time, alt.Y("base_volume:Q", title="volume"), colour)
        .properties(height=110)
    )
    combined: alt.VConcatChart = alt.vconcat(price, volume).resolve_scale(x="shared")
    return combined


def error_comparison(rolling: pd.DataFrame) -> alt.Chart:
    long = rolling.melt("target_time", var_name="forecaster", value_name="mae")
    chart: alt.Chart = (
        alt.Chart(long)
        .mark_line()
        .encode(
            alt.X(
                "target_time:T", title=None, axis=alt.Axis(format=time_format(long["target_time"]))
            ),
            alt.Y("mae:Q", title="rolling MAE"),
            alt.Color("forecaster:N"),
        )
        .properties(height=220)
    )
    return chart
