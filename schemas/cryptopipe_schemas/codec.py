"""Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then Avro binary."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from cryptopipe_schemas.avro_schemas import SchemaName, parsed_schema, schema_id

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")


class DecodeError(ValueError):
    """Bytes that are not a record of a schema we know, in the Confluent wire format."""


@dataclass(frozen=True)
class Decoded:
    schema: SchemaName
    record: dict[str, Any]


def encode(name: SchemaName, record: Mapping[str, Any], *, id_override: int | None = None) -> bytes:
    """Frame one record. `id_override` is the id a schema registry assigned, when one is used."""
    buffer = io.BytesIO()
    buffer.write(HEADER.pack(MAGIC_BYTE, schema_id(name) if id_override is None else id_override))
    schemaless_writer(buffer, parsed_schema(name), dict(record))
    return buffer.getvalue()


def _schemas_by_id() -> dict[int, SchemaName]:
    return {schema_id(name): name for name in SchemaName}


def decode(payload: bytes, *, ids: Mapping[int, SchemaName] | None = None) -> Decoded:
    """Read one framed record; `ids` maps registry-assigned ids, our derived ids otherwise."""
    if len(payload) < HEADER.size:
        raise DecodeError(f"{len(payload)} bytes is shorter than the 5-byte Confluent header")
    magic, found_id = HEADER.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise DecodeError(f"magic byte is {magic}, not {MAGIC_BYTE}: not Confluent-framed Avro")
    known = ids if ids is not None else _schemas_by_id()
    if found_id not in known:
        raise DecodeError(f"schema id {found_id} is not one of ours")
    name = known[found_id]
    reader = io.BytesIO(payload[HEADER.size :])
    try:
        record = schemaless_reader(reader, parsed_schema(name), None)
    except (EOFError, ValueError, IndexError, struct.error, UnicodeDecodeError) as error:
        raise DecodeError(f"not a valid {name.value} record: {error}") from error
    if reader.tell() != len(payload) - HEADER.size:
        raise DecodeError(f"{len(payload) - HEADER.size - reader.tell()} bytes after the record")
    if not isinstance(record, dict):
        raise DecodeError(f"{name.value} decoded to {type(record).__name__}, not a record")
    return Decoded(name, record)


@cache
def encode_key(symbol: str, *, id_override: int | None = None) -> bytes:
    return encode(SchemaName.SYMBOL_KEY, {"symbol": symbol}, id_override=id_override)
