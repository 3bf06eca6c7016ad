"""The dashboard's pages and their cached reads.

Every source is read through a small reader that answers data or a problem in words; a source
that is down or empty is said so on the page and the rest keeps working.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import pandas as pd
import streamlit as st

from cryptopipe_dashboard import accuracy, charts
from cryptopipe_dashboard.config import DashboardConfig, parse, registry_of
from cryptopipe_dashboard.readers import kafka_reader, kube_reader, registry_reader
from cryptopipe_dashboard.readers.outcome import Read


@st.cache_resource
def load_config(argv: tuple[str, ...]) -> DashboardConfig:
    return parse(argv)


def _ttl(config: DashboardConfig) -> float:
    return max(1.0, config.refresh_seconds)


@st.cache_data(ttl=2, show_spinner=False)
def cached_candles(
    bootstrap: str, symbol: str, interval: str, limit: int, registry_url: str | None
) -> Read[pd.DataFrame]:
    return kafka_reader.read_candles(bootstrap, symbol, interval, limit, registry_url)


@st.cache_data(ttl=2, show_spinner=False)
def cached_forecasts(
    bootstrap: str, symbol: str, limit: int, registry_url: str | None
) -> Read[pd.DataFrame]:
    return kafka_reader.read_forecasts(bootstrap, symbol, limit, registry_url)


@st.cache_data(ttl=2, show_spinner=False)
def cached_newest_trade(
    bootstrap: str, symbol: str, registry_url: str | None
) -> Read[dt.datetime | None]:
    return kafka_reader.read_newest_trade_time(bootstrap, symbol, registry_url)


@st.cache_data(ttl=30, show_spinner=False)
def cached_report(location: str | None, symbol: str) -> Read[registry_reader.TrainingReport | None]:
    return registry_reader.read_latest_report(location, symbol)


@st.cache_data(ttl=5, show_spinner=False)
def cached_pipelines(namespace: str) -> Read[list[kube_reader.PipelineStatus]]:
    return kube_reader.read_pipelines(namespace)


def say_problem(read: Read[Any]) -> bool:
    """Show a reader's problem as a warning; True when there was one."""
    if read.problem is not None:
        st.warning(str(read.problem), icon="⚠️")
        return True
    return False


SYNTHETIC_NOTE = (
    "{symbol}: synthetic trades, a seeded random walk for tests and benchmarks, not market data."
)


def market_page(config: DashboardConfig) -> None:
    st.title("Market")
    symbol = st.sidebar.selectbox("Symbol", config.symbols, key="symbol")
    interval = st.sidebar.selectbox("Interval", config.intervals, key="interval")
    if symbol in config.synthetic_symbols:
        st.warning(SYNTHETIC_NOTE.format(symbol=symbol), icon="🧪")

    @st.fragment(run_every=_ttl(config))
    def live() -> None:
        registry_url = config.schema_registry_url
        candles = cached_candles(
            config.kafka_bootstrap, symbol, interval, config.candle_limit, registry_url
        )
        forecasts = cached_forecasts(config.kafka_bootstrap, symbol, 20 * 50, registry_url)
        if say_problem(candles) or candles.value is None:
            return
        if candles.value.empty:
            st.info(
                f"No finalized {interval} candles for {symbol} yet; they appear as windows close."
            )
            return
        frame = candles.value
        forecast_frame = forecasts.value if forecasts.value is not None else pd.DataFrame()
        say_problem(forecasts)
        last = frame.iloc[-1]
        left, middle, right = st.columns(3)
        left.metric("Last close", f"{last['close']:,.2f}")
        middle.metric("VWAP", f"{last['vwap']:,.2f}")
        right.metric("Trades in last candle", f"{int(last['trade_count']):,}")
        same_interval = (
            forecast_frame[forecast_frame["interval"] == interval]
            if not forecast_frame.empty
            else forecast_frame
        )
        st.altair_chart(charts.candlestick(frame, same_interval), width="stretch")
        if len(frame) > charts.RECENT_CANDLES and not same_interval.empty:
            st.caption(f"The last {charts.RECENT_CANDLES} candles and the newest forecast")
            zoomed = charts.candlestick(charts.recent(frame), same_interval)
            st.altair_chart(zoomed, width="stretch")
        if same_interval.empty:
            st.info("No forecasts for this interval yet.")
            return
        serving = str(charts.latest_forecast_path(same_interval)["model"].iloc[0])
        st.subheader("Forecast accuracy")
        st.caption(f"Serving: **{serving}**")
        errors = accuracy.realized_errors(frame, same_interval)
        ratio = accuracy.mase(errors)
        if ratio is None:
            st.info("No forecast has reached its target candle yet.")
        else:
            verdict = "better than" if ratio < 1 else "not better than"
            st.metric(
                "MASE against persistence (realized)",
                f"{ratio:.3f}",
                help="below 1 beats persistence",
            )
            st.caption(
                f"The served forecasts are {verdict} persistence "
                f"over {len(errors)} realized forecasts."
            )
            st.altair_chart(
                charts.error_comparison(accuracy.rolling_comparison(errors)),
                width="stretch",
            )

    live()


def freshness(config: DashboardConfig, symbol: str) -> str:
    newest = cached_newest_trade(config.kafka_bootstrap, symbol, config.schema_registry_url)
    if newest.problem is not None:
        return f"unknown ({newest.problem.message})"
    if newest.value is None:
        return "no trades yet"
    age = (dt.datetime.now(dt.UTC) - newest.value).total_seconds()
    state = "fresh" if age <= config.stale_after_seconds else "STALE"
    return f"{state}: newest trade {age:,.0f} s old ({newest.value:%Y-%m-%d %H:%M:%S} UTC)"


def pipelines_page(config: DashboardConfig) -> None:
    st.title("Pipelines")
    if config.namespace is not None:
        pipelines = cached_pipelines(config.namespace)
        if not say_problem(pipelines) and pipelines.value is not None:
            if not pipelines.value:
                st.info(f"No CryptoPipelines in namespace {config.namespace}.")
            for pipeline in pipelines.value:
                with st.expander(
                    f"{pipeline.name} ({pipeline.symbol}): {pipeline.phase}", expanded=True
                ):
                    st.dataframe(pd.DataFrame(pipeline.conditions), hide_index=True)
                    st.caption(
                        f"Model: {pipeline.model or 'none'} · "
                        f"last forecast: {pipeline.last_forecast or 'none'}"
                    )
    else:
        st.caption("Local mode: pipelines are the local components' data.")
    for symbol in config.symbols:
        st.subheader(symbol)
        st.write(f"Data freshness: {freshness(config, symbol)}")
        report = cached_report(registry_of(config, symbol), symbol)
        if say_problem(report):
            continue
        if report.value is None:
            st.info("No training report yet.")
            continue
        manifest = report.value.manifest
        serving = report.value.current or "a baseline (no promoted version)"
        st.write(
            f"Latest version **{report.value.version}**: {manifest.get('reason', '')}. "
            f"Current: {serving}."
        )
        if report.value.markdown:
            with st.expander("Training report", expanded=False):
                st.markdown(report.value.markdown)
        for name, image in report.value.images.items():
            st.image(image, caption=name)


def current_config() -> DashboardConfig:
    return load_config(tuple(sys.argv[1:]))
