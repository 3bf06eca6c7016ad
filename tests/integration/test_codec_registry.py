"""The codec's registry path against a real Confluent-compatible registry (Apicurio)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cryptopipe_schemas.avro_schemas import SchemaName, schema_id
from cryptopipe_schemas.codec import decode, encode
from cryptopipe_schemas.registry import SchemaIds, register_all, resolve
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

TRADE = {
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "trade_id": 42,
    "price": Decimal("97000.50000000"),
    "quantity": Decimal("0.01000000"),
    "buyer_is_maker": False,
    "trade_time": dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC),
    "event_time": dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC),
    "ingest_time": dt.datetime(2026, 11, 29, 12, 0, 1, tzinfo=dt.UTC),
}


@pytest.fixture(scope="module")
def registry_url(testbed: TestbedSession) -> str:
    return str(testbed.ensure("registry")["CRYPTOPIPE_SCHEMA_REGISTRY_URL"])


def test_registered_ids_frame_records_that_resolve_back(registry_url: str) -> None:
    ids = register_all(registry_url)
    assert set(ids.by_name) == set(SchemaName)
    assert register_all(registry_url) == ids  # registering again changes nothing

    payload = encode(SchemaName.TRADE, TRADE, id_override=ids.of(SchemaName.TRADE))
    assert int.from_bytes(payload[1:5], "big") == ids.of(SchemaName.TRADE)
    assert decode(payload, ids=ids.names_by_id()).record == TRADE
    for name in SchemaName:
        assert resolve(registry_url, ids.of(name)) is name


def test_derived_ids_need_no_registry() -> None:
    derived = SchemaIds.derived()
    assert derived.of(SchemaName.TRADE) == schema_id(SchemaName.TRADE)
    assert decode(encode(SchemaName.TRADE, TRADE)).record == TRADE
