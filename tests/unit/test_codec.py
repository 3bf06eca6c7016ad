from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from avro.io import BinaryDecoder, DatumReader
from avro.schema import parse as parse_avro
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import (
    CANDLE_FIELDS,
    SchemaName,
    field_names,
    schema_id,
    schema_json,
)
from cryptopipe_schemas.codec import DecodeError, decode, encode, encode_key
from cryptopipe_schemas.records import TradeRecord

pytestmark = pytest.mark.unit

UTC = dt.UTC


def _trade(**overrides: object) -> dict[str, object]:
    trade: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": 5_123_456_789,
        "price": Decimal("97012.34000000"),
        "quantity": Decimal("0.00120000"),
        "buyer_is_maker": True,
        "trade_time": dt.datetime(2026, 11, 29, 20, 0, 0, 123000, tzinfo=UTC),
        "event_time": dt.datetime(2026, 11, 29, 20, 0, 0, 125000, tzinfo=UTC),
        "ingest_time": dt.datetime(2026, 11, 29, 20, 0, 0, 190000, tzinfo=UTC),
    }
    trade.update(overrides)
    return trade


def test_record_types_follow_the_schemas() -> None:
    assert tuple(TradeRecord.__annotations__) == field_names(SchemaName.TRADE)
    candle = schema_json(SchemaName.CANDLE)["fields"]
    assert tuple(entry["name"] for entry in candle) == CANDLE_FIELDS


def test_trade_round_trip_keeps_exchange_precision() -> None:
    payload = encode(SchemaName.TRADE, _trade())
    assert payload[0] == 0
    assert int.from_bytes(payload[1:5], "big") == schema_id(SchemaName.TRADE)
    decoded = decode(payload)
    assert decoded.schema is SchemaName.TRADE
    assert decoded.record == _trade()


def test_an_independent_avro_reader_decodes_our_frames() -> None:
    payload = encode(SchemaName.TRADE, _trade())
    reader = DatumReader(parse_avro(json.dumps(schema_json(SchemaName.TRADE))))
    record = reader.read(BinaryDecoder(io.BytesIO(payload[5:])))
    assert isinstance(record, dict)
    assert record["price"] == Decimal("97012.34000000")
    assert record["trade_id"] == 5_123_456_789


def test_schema_ids_are_distinct_positive_and_stable() -> None:
    ids = [schema_id(name) for name in SchemaName]
    assert len(set(ids)) == len(ids)
    assert all(0 < i < 2**31 for i in ids)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "shorter than the 5-byte"),
        (b"\x01\x00\x00\x00\x01x", "magic byte is 1"),
        (b"\x00\x00\x00\x00\x01x", "not one of ours"),
    ],
)
def test_bad_frames_are_named(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(payload)


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(DecodeError, match="bytes after the record"):
        decode(encode_key("BTCUSDT") + b"\x00")


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(payload)


@given(
    symbol=st.from_regex(r"[A-Z0-9]{5,12}", fullmatch=True),
    trade_id=st.integers(min_value=0, max_value=2**62),
    price=st.decimals(min_value=0, max_value=10**15, places=8, allow_nan=False),
)
def test_trade_round_trip_property(symbol: str, trade_id: int, price: Decimal) -> None:
    record = _trade(symbol=symbol, trade_id=trade_id, price=price)
    assert decode(encode(SchemaName.TRADE, record)).record == record


def test_topic_names() -> None:
    assert topics.trades("BTCUSDT") == "trades.btcusdt"
    assert topics.candles("1m", "ETHUSDT") == "candles.1m.ethusdt"
    assert topics.forecasts("BTCUSDT") == "forecasts.btcusdt"
    assert topics.deadletter("binance") == "deadletter.binance"
    with pytest.raises(ValueError, match="not a Binance symbol"):
        topics.trades("btc-usdt")
    with pytest.raises(ValueError, match="not an interval"):
        topics.candles("1 minute", "BTCUSDT")
