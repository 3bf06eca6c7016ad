"""The Avro schemas of every Kafka key and value, loaded from the .avsc files beside this module."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

NAMESPACE = "io.cryptopipe"


class SchemaName(StrEnum):
    SYMBOL_KEY = "SymbolKey"
    TRADE = "Trade"
    CANDLE = "Candle"
    FORECAST = "Forecast"
    DEAD_LETTER = "DeadLetter"


@cache
def schema_json(name: SchemaName) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("avro", f"{name.value}.avsc").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def field_names(name: SchemaName) -> tuple[str, ...]:
    """A record's field names, in the schema's order."""
    return tuple(field["name"] for field in schema_json(name)["fields"])


# The Candle record's fields, in the schema's order: the columns every candle sink writes.
CANDLE_FIELDS = field_names(SchemaName.CANDLE)


@cache
def parsed_schema(name: SchemaName) -> Any:
    return parse_schema(schema_json(name))


@cache
def canonical_form(name: SchemaName) -> str:
    """Avro's Parsing Canonical Form: what identifies a schema, whatever its docs and spacing."""
    return str(to_parsing_canonical_form(schema_json(name)))


def fingerprint_id(canonical: str) -> int:
    """A deterministic Confluent schema id: the top 31 bits of SHA-256 of the canonical form.

    Any writer derives the same id for the same schema, so readers need no registry.
    """
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:4], "big") & 0x7FFFFFFF


@cache
def schema_id(name: SchemaName) -> int:
    return fingerprint_id(canonical_form(name))
