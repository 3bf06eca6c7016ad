"""Kafka topic names, per symbol and kind, in one place (docs/architecture.md, "Contracts")."""

from __future__ import annotations

import re

from cryptopipe_schemas.durations import INTERVAL_UNITS, duration_pattern, parse_interval

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{5,20}$")
INTERVAL_PATTERN = re.compile(duration_pattern(INTERVAL_UNITS))


def _symbol(symbol: str) -> str:
    if not SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"{symbol!r} is not a Binance symbol such as BTCUSDT")
    return symbol.lower()


def trades(symbol: str) -> str:
    return f"trades.{_symbol(symbol)}"


def candles(interval: str, symbol: str) -> str:
    parse_interval(interval)  # a ValueError that says what an interval looks like
    return f"candles.{interval}.{_symbol(symbol)}"


def forecasts(symbol: str) -> str:
    return f"forecasts.{_symbol(symbol)}"


def deadletter(source: str) -> str:
    if not re.match(r"^[a-z][a-z0-9-]*$", source):
        raise ValueError(f"{source!r} is not a source name such as binance")
    return f"deadletter.{source}"
