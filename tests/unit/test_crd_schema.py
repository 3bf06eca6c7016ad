"""The CRD's schema is generated from the spec model; these tests hold the two together."""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe_schemas.crd import CEL_RULES, spec_schema
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, camel, parse_spec

pytestmark = pytest.mark.unit

SCHEMA = spec_schema()
CROSS_FIELD = ("may appear once", "is not aggregated", "must be smaller than", "Sheets sink")


def _apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server does before validation: drop nulls (no field is nullable), then fill
    absent fields that have defaults."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    filled = {key: item for key, item in value.items() if item is not None}
    for key, child in schema.get("properties", {}).items():
        if key not in filled and "default" in child:
            filled[key] = copy.deepcopy(child["default"])
        if key in filled:
            filled[key] = _apply_defaults(child, filled[key])
    return filled


def _schema_accepts(document: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(_apply_defaults(SCHEMA, document), SCHEMA)
    except jsonschema.ValidationError:
        return False
    return True


def _model_fields(cls: type, prefix: str = "") -> set[str]:
    paths = set()
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path = f"{prefix}{camel(field.name)}"
        paths.add(path)
        inner = [a for a in typing.get_args(hints[field.name]) if a is not type(None)]
        kind = inner[0] if inner else hints[field.name]
        if dataclasses.is_dataclass(kind):
            paths |= _model_fields(kind, f"{path}.")  # type: ignore[arg-type]
    return paths


def _schema_fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, child in schema.get("properties", {}).items():
        paths.add(f"{prefix}{key}")
        assert child.get("description"), f"{prefix}{key} has no description for kubectl explain"
        paths |= _schema_fields(child, f"{prefix}{key}.")
    return paths


def test_every_field_of_the_model_is_in_the_schema_with_a_description() -> None:
    assert _schema_fields(SCHEMA) == _model_fields(CryptoPipelineSpec)
    assert SCHEMA["required"] == ["symbol"]


def test_schema_defaults_give_the_models_defaults() -> None:
    defaulted = _apply_defaults(SCHEMA, {"symbol": "BTCUSDT"})
    assert parse_spec(defaulted) == parse_spec({"symbol": "BTCUSDT"})


def test_schema_defaults_apply_field_by_field() -> None:
    document = {"symbol": "BTCUSDT", "resources": {"trainer": {"memory": "4Gi"}}}
    defaulted = _apply_defaults(SCHEMA, document)
    assert defaulted["resources"]["trainer"] == {"cpu": "1", "memory": "4Gi"}
    assert parse_spec(defaulted) == parse_spec(document)


def test_cross_field_rules_sit_on_existing_objects() -> None:
    fields = _schema_fields(SCHEMA)
    for path in CEL_RULES:
        assert path == "" or path in fields, path
        for rule in CEL_RULES[path]:
            assert rule["message"] and rule["rule"]


VALUES: list[Any] = [
    None,
    True,
    0,
    1,
    -1,
    7,
    2.5,
    0.95,
    3000,
    "",
    "x",
    "BTCUSDT",
    "btc",
    "1m",
    "1h",
    "90s",
    "0 */6 * * *",
    "250m",
    "1Gi",
    "binance",
    "replay",
    "ftx",
    ["1m"],
    ["1m", "1h"],
    ["1m", "1m"],
    ["soon"],
    [],
    {},
]
PATHS = sorted(_model_fields(CryptoPipelineSpec))


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = document
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return
    node[leaf] = value


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(VALUES)), max_size=3))
def test_schema_and_model_agree_on_single_field_rules(changes: list[tuple[str, Any]]) -> None:
    document: dict[str, Any] = {"symbol": "BTCUSDT"}
    for path, value in changes:
        _set(document, path, copy.deepcopy(value))
    try:
        parse_spec(document)
        model_ok, problems = True, []
    except SpecError as error:
        model_ok, problems = False, error.problems
    schema_ok = _schema_accepts(document)
    if model_ok:
        assert schema_ok, f"the model accepts what the CRD refuses: {document}"
    elif all(any(phrase in p for phrase in CROSS_FIELD) for p in problems):
        pass  # CEL rules: checked on the real API server
    elif not any("must not be null" in p for p in problems):
        # The API server drops null fields; everything else the model refuses, the schema refuses.
        assert not schema_ok, f"the CRD accepts what the model refuses: {document}: {problems}"
