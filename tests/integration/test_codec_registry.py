"""The codec's registry path against a real Confluent-compatible registry (Apicurio)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from net_support import free_port

from cryptopipe_schemas.avro_schemas import SchemaName, schema_id
from cryptopipe_schemas.codec import DecodeError, decode, encode
from cryptopipe_schemas.registry import (
    RegistryError,
    ResolvingIds,
    SchemaIds,
    register_all,
    registered_ids,
    resolve,
)
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


def test_a_reader_resolves_registry_ids_it_never_registered(registry_url: str) -> None:
    ids = register_all(registry_url)
    reader = ResolvingIds(registry_url)
    payload = encode(SchemaName.TRADE, TRADE, id_override=ids.of(SchemaName.TRADE))
    assert decode(payload, ids=reader).record == TRADE
    assert decode(encode(SchemaName.TRADE, TRADE), ids=reader).record == TRADE  # derived ids too
    unknown = encode(SchemaName.TRADE, TRADE, id_override=987_654)
    with pytest.raises(DecodeError, match="schema id 987654 is not one of ours"):
        decode(unknown, ids=reader)


class FakeClock:
    """Time that passes only when the retry loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_a_registry_that_stays_down_falls_back_to_the_ids_cached_at_the_last_start(
    registry_url: str, tmp_path: Path
) -> None:
    cache = tmp_path / "ids.json"
    ids = registered_ids(registry_url, cache=cache)
    assert ids == register_all(registry_url) and cache.exists()

    down = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"  # nothing listens there
    clock = FakeClock()
    cached = registered_ids(down, cache=cache, wait_seconds=10, sleep=clock.sleep, clock=clock)
    assert cached == ids
    assert clock.slept and sum(clock.slept) <= 10  # retried for the wait, then the cache

    clock = FakeClock()
    with pytest.raises(RegistryError, match=r"unreachable.*and no cached schema ids"):
        registered_ids(
            down, cache=tmp_path / "none.json", wait_seconds=3, sleep=clock.sleep, clock=clock
        )
