"""Every schema change stays readable by the previous readers, and reads what they wrote."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from cryptopipe_schemas.avro_schemas import SchemaName, schema_json

pytestmark = pytest.mark.unit

RELEASED = Path(__file__).resolve().parents[2] / "schemas" / "released"
RELEASES = sorted(path for path in RELEASED.iterdir() if path.is_dir())


def _sample(schema: Any) -> Any:
    """A value of every field, so that resolution touches each one."""
    if isinstance(schema, list):
        return _sample(next(branch for branch in schema if branch != "null"))
    if isinstance(schema, str):
        return {
            "string": "x",
            "long": 7,
            "int": 3,
            "double": 1.5,
            "boolean": True,
            "bytes": b"\x01",
        }[schema]
    logical = schema.get("logicalType")
    if logical == "decimal":
        return Decimal("12.34000000")
    if logical == "timestamp-millis":
        return dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
    if schema["type"] == "record":
        return {field["name"]: _sample(field["type"]) for field in schema["fields"]}
    return _sample(schema["type"])


def _round_trip(writer: dict[str, Any], reader: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(writer), _sample(writer))
    buffer.seek(0)
    return schemaless_reader(buffer, parse_schema(writer), parse_schema(reader))


def test_there_is_a_release_for_every_current_schema() -> None:
    assert RELEASES
    for name in SchemaName:
        assert (RELEASES[-1] / f"{name.value}.avsc").exists(), name


@pytest.mark.parametrize("release", RELEASES, ids=lambda path: path.name)
@pytest.mark.parametrize("name", list(SchemaName), ids=lambda name: name.value)
def test_current_and_released_schemas_read_each_other(release: Path, name: SchemaName) -> None:
    released_file = release / f"{name.value}.avsc"
    if not released_file.exists():
        pytest.fail(
            f"{name.value} is missing from release {release.name}: schemas are never removed"
        )
    released = json.loads(released_file.read_text())
    current = schema_json(name)
    assert _round_trip(writer=current, reader=released) is not None  # old readers, new data
    assert _round_trip(writer=released, reader=current) is not None  # new readers, old data


def test_an_incompatible_change_is_caught() -> None:
    current = schema_json(SchemaName.TRADE)
    breaking = {**current, "fields": [*current["fields"], {"name": "venue", "type": "string"}]}
    with pytest.raises(Exception, match="venue"):
        _round_trip(writer=current, reader=breaking)
