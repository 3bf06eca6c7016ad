from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe_jobs.producer.frames import (
    ControlMessage,
    ParsedTrade,
    Rejected,
    ServerShutdown,
    parse_frame,
)
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import decode, encode

pytestmark = pytest.mark.unit

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})
NOW = 1_764_446_400_500


def _trade(**overrides: Any) -> dict[str, Any]:
    data = {
        "e": "trade",
        "E": 1_764_446_400_123,
        "s": "BTCUSDT",
        "t": 5_000_001,
        "p": "97012.34000000",
        "q": "0.00120000",
        "T": 1_764_446_400_120,
        "m": True,
        "M": True,
    }
    data.update(overrides)
    return data


def _frame(data: dict[str, Any], stream: str = "btcusdt@trade") -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def test_a_combined_stream_trade_becomes_a_record_that_encodes() -> None:
    outcome = parse_frame(_frame(_trade()), SYMBOLS, NOW)
    assert isinstance(outcome, ParsedTrade)
    assert outcome.stream == "btcusdt@trade"
    record = outcome.record
    assert record["price"] == Decimal("97012.34000000")
    assert record["trade_id"] == 5_000_001
    assert int(record["ingest_time"].timestamp() * 1000) == NOW
    assert decode(encode(SchemaName.TRADE, record)).record == record


def test_a_raw_stream_trade_is_accepted_too() -> None:
    assert isinstance(parse_frame(json.dumps(_trade()).encode(), SYMBOLS, NOW), ParsedTrade)


def test_server_shutdown_and_control_replies_are_not_data() -> None:
    shutdown = parse_frame(b'{"e":"serverShutdown","E":1764446400000}', SYMBOLS, NOW)
    assert shutdown == ServerShutdown(1_764_446_400_000)
    assert isinstance(parse_frame(b'{"result":null,"id":1}', SYMBOLS, NOW), ControlMessage)


BAD_FRAMES: list[tuple[bytes, str]] = [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON list, not an object"),
    (json.dumps({"stream": "btcusdt@trade"}).encode(), "without a string 'stream'"),
    (_frame({k: v for k, v in _trade().items() if k != "p"}), "missing field 'p'"),
    (_frame(_trade(t="5000001")), "field 't' must be an integer"),
    (_frame(_trade(m="yes")), "field 'm' must be bool"),
    (_frame(_trade(s="DOGEUSDT"), "dogeusdt@trade"), "unknown symbol 'DOGEUSDT'"),
    (_frame(_trade(p="-1.5")), "price -1.5 is not positive"),
    (_frame(_trade(p="NaN")), "not a finite number"),
    (_frame(_trade(q="abc")), "quantity 'abc' is not a decimal number"),
    (_frame(_trade(p="1.123456789")), "more than 8 decimal places"),
    (_frame(_trade(T=1_764_446_400_120_000_000)), "is not a time in milliseconds"),
    (_frame(_trade(t=-4)), "trade id -4 is negative"),
    (_frame(_trade(e="kline")), "event type 'kline' is not 'trade'"),
    (_frame(_trade(), "ethusdt@trade"), "does not carry trades of BTCUSDT"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_FRAMES)
def test_malformed_frames_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    outcome = parse_frame(raw, SYMBOLS, NOW)
    assert isinstance(outcome, Rejected)
    assert reason in outcome.reason


@given(st.binary(max_size=300))
def test_any_bytes_become_an_outcome_never_an_exception(raw: bytes) -> None:
    assert isinstance(
        parse_frame(raw, SYMBOLS, NOW), ParsedTrade | Rejected | ServerShutdown | ControlMessage
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*_trade(), "x"]), json_values, max_size=10))
def test_any_json_object_becomes_an_outcome(data: dict[str, Any]) -> None:
    outcome = parse_frame(_frame({**_trade(), **data}), SYMBOLS, NOW)
    if isinstance(outcome, ParsedTrade):
        decode(encode(SchemaName.TRADE, outcome.record))
