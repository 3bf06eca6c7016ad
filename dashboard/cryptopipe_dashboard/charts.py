"""Altair charts built from data frames (pure: frames in, chart specs out)."""

from __future__ import annotations

import altair as alt
import pandas as pd

UP, DOWN, FORECAST = "#26a69a", "#ef5350", "#5c6bc0"


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
    time = alt.X("window_start:T", title=None)
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
    path = latest_forecast_path(forecasts)
    if not path.empty:
        target = alt.X("target_time:T")
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
            alt.X("target_time:T", title=None),
            alt.Y("mae:Q", title="rolling MAE"),
            alt.Color("forecaster:N"),
        )
        .properties(height=220)
    )
    return chart
