"""Binance combined-stream frames into Trade records, or into dead letters with a reason.

Pure: bytes and the ingest time in, a parsed outcome out. Never raises on input.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptopipe_schemas.records import TradeRecord

TRADE_FIELDS = {"e": str, "E": int, "s": str, "t": int, "p": str, "q": str, "T": int, "m": bool}
PRICE_QUANTUM = Decimal("0.00000001")
MAX_DECIMAL = Decimal("1e16")


@dataclass(frozen=True)
class ParsedTrade:
    record: TradeRecord
    stream: str | None


@dataclass(frozen=True)
class Rejected:
    reason: str
    event_time_ms: int | None = None


@dataclass(frozen=True)
class ServerShutdown:
    event_time_ms: int | None


@dataclass(frozen=True)
class ControlMessage:
    """A reply to a control request (subscribe, list): not data, nothing to publish."""

    body: dict[str, Any]


Outcome = ParsedTrade | Rejected | ServerShutdown | ControlMessage


def utc_from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _decimal(text: str, name: str) -> Decimal | str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return f"{name} {text!r} is not a decimal number"
    if not value.is_finite():
        return f"{name} {text!r} is not a finite number"
    if value <= 0:
        return f"{name} {text} is not positive"
    if value >= MAX_DECIMAL:
        return f"{name} {text} is too large"
    if value != value.quantize(PRICE_QUANTUM):
        return f"{name} {text} has more than 8 decimal places"
    return value.quantize(PRICE_QUANTUM)


def _check_trade(data: dict[str, Any], symbols: frozenset[str]) -> str | None:
    for name, kind in TRADE_FIELDS.items():
        if name not in data:
            return f"missing field {name!r}"
        value = data[name]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"field {name!r} must be an integer, not {type(value).__name__}"
        if not isinstance(value, kind):
            return f"field {name!r} must be {kind.__name__}, not {type(value).__name__}"
    if data["s"] not in symbols:
        return f"unknown symbol {data['s']!r} (subscribed: {', '.join(sorted(symbols))})"
    if data["t"] < 0:
        return f"trade id {data['t']} is negative"
    for name in ("E", "T"):
        if not 0 < data[name] < 10**14:
            return f"field {name!r} = {data[name]} is not a time in milliseconds"
    return None


def parse_frame(raw: bytes, symbols: frozenset[str], ingest_time_ms: int) -> Outcome:
    """One websocket text frame: a trade, a shutdown notice, a control reply, or a rejection."""
    try:
        # Decoding first skips json.loads' encoding detection, a tenth of the parse on this path.
        message = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        return Rejected(f"not JSON: {error}")
    if not isinstance(message, dict):
        return Rejected(f"frame is a JSON {type(message).__name__}, not an object")
    stream = None
    if "stream" in message or "data" in message:
        stream, data = message.get("stream"), message.get("data")
        if not isinstance(stream, str) or not isinstance(data, dict):
            return Rejected("combined-stream frame without a string 'stream' and an object 'data'")
    else:
        data = message
    event = data.get("e")
    event_time = data.get("E") if isinstance(data.get("E"), int) else None
    if event == "serverShutdown":
        return ServerShutdown(event_time)
    if "result" in data and "id" in data:
        return ControlMessage(data)
    if event != "trade":
        return Rejected(f"event type {event!r} is not 'trade'", event_time)
    problem = _check_trade(data, symbols)
    if problem:
        return Rejected(problem, event_time)
    price, quantity = _decimal(data["p"], "price"), _decimal(data["q"], "quantity")
    if isinstance(price, str):
        return Rejected(price, event_time)
    if isinstance(quantity, str):
        return Rejected(quantity, event_time)
    if stream is not None and stream != f"{data['s'].lower()}@trade":
        return Rejected(f"stream {stream!r} does not carry trades of {data['s']}", event_time)
    record = TradeRecord(
        exchange="binance",
        symbol=data["s"],
        trade_id=data["t"],
        price=price,
        quantity=quantity,
        buyer_is_maker=data["m"],
        trade_time=utc_from_ms(data["T"]),
        event_time=utc_from_ms(data["E"]),
        ingest_time=utc_from_ms(ingest_time_ms),
    )
    return ParsedTrade(record, stream)
