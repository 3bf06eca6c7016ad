"""The test bed's schema registry registers Avro schemas over the Confluent REST API."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA = {
    "type": "record",
    "name": "Tick",
    "namespace": "io.cryptopipe.smoke",
    "fields": [
        {"name": "symbol", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def _call(url: str, payload: dict[str, Any] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Accept", CONTENT_TYPE)
    if data is not None:
        request.add_header("Content-Type", CONTENT_TYPE)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.fixture(scope="module")
def registry_url(testbed: TestbedSession) -> str:
    return testbed.ensure("registry")["CRYPTOPIPE_SCHEMA_REGISTRY_URL"]


def test_register_read_back_and_reregister(registry_url: str) -> None:
    subject = f"smoke.{uuid.uuid4().hex[:10]}-value"
    body = {"schemaType": "AVRO", "schema": json.dumps(SCHEMA)}

    first = _call(f"{registry_url}/subjects/{subject}/versions", body)
    assert isinstance(first["id"], int)

    fetched = _call(f"{registry_url}/schemas/ids/{first['id']}")
    assert json.loads(fetched["schema"]) == SCHEMA

    again = _call(f"{registry_url}/subjects/{subject}/versions", body)
    assert again["id"] == first["id"]

    assert subject in _call(f"{registry_url}/subjects")
    assert _call(f"{registry_url}/subjects/{subject}/versions") == [1]
