"""The CryptoPipeline CRD's OpenAPI v3 schema, generated from the spec model in spec.py.

One source of truth: the field names, docs, defaults, enums, patterns and bounds come from the
dataclasses' metadata, so `kubectl explain` teaches what `parse_spec` enforces. What plain
schema cannot say is carried as CEL rules (`x-kubernetes-validations`) with the same messages
a person reads from `parse_spec`.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import StrEnum
from typing import Any

from cryptopipe_schemas.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    MAX_ITEMS,
    MAX_STRING,
    CryptoPipelineSpec,
    camel,
    optional_inner,
    to_mapping,
)

PLURAL = "cryptopipelines"
SHORT_NAMES = ["cpl"]
API_PATH = f"/apis/{API_GROUP}/{API_VERSION}"


def pipeline_path(namespace: str, name: str) -> str:
    """The API server's path of one CryptoPipeline."""
    return f"{API_PATH}/namespaces/{namespace}/{PLURAL}/{name}"


CATEGORIES = ["cryptopipe"]

# Rules beyond one field, keyed by the camelCase path of the object they sit on ("" = spec).
# `fieldPath` (relative to that object) makes `kubectl apply` name the field at fault.
CEL_RULES: dict[str, list[dict[str, str]]] = {
    "": [
        {
            "rule": "self.symbol == oldSelf.symbol",
            "message": "symbol cannot change after creation; create a new CryptoPipeline instead",
            "fieldPath": ".symbol",
            "reason": "FieldValueForbidden",
        },
        {
            "rule": "self.intervals.exists(i, i == self.model.interval)",
            "message": "model.interval must be one of the aggregated intervals",
            "fieldPath": ".model.interval",
            "reason": "FieldValueInvalid",
        },
    ],
    "model": [
        {
            "rule": "self.horizon < self.lookback",
            "message": "model.horizon must be smaller than model.lookback: "
            "the model cannot see less than it forecasts",
            "fieldPath": ".horizon",
            "reason": "FieldValueInvalid",
        }
    ],
    "sinks.sheets": [
        {
            "rule": "!self.enabled || (has(self.secretRef) && has(self.spreadsheetId))",
            "message": "an enabled Sheets sink needs spreadsheetId and secretRef "
            "(a Secret with the service account's JSON key)",
            "reason": "FieldValueRequired",
        }
    ],
}
MAX_NAME = 63
# On the resource itself: its name becomes a label value and the stem of every child's name,
# and a Service's name must be a DNS label that starts with a letter.
NAME_RULES: list[dict[str, str]] = [
    {
        "rule": f"self.metadata.name.size() <= {MAX_NAME}",
        "message": f"metadata.name must be at most {MAX_NAME} characters: "
        "it is a label value on every child",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must start with a letter and hold only a-z, 0-9 and '-': "
        "the Services of the pipeline are named after it",
        "reason": "FieldValueInvalid",
    },
]

_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _default(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    return value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _field_schema(annotation: Any, metadata: Any, path: str, default: Any) -> dict[str, Any]:
    kind, _ = optional_inner(annotation)
    schema: dict[str, Any] = {"description": metadata["doc"]}
    if dataclasses.is_dataclass(kind):
        defaults = default if dataclasses.is_dataclass(default) else None
        schema.update(_object_schema(kind, path, defaults))  # type: ignore[arg-type]
        schema["description"] = metadata["doc"]
        return schema
    if typing.get_origin(kind) is list:
        item_type = typing.get_args(kind)[0]
        items: dict[str, Any] = {"type": _SCALARS[item_type]}
        if "item_pattern" in metadata:
            items["pattern"] = metadata["item_pattern"]
        if item_type is str:
            items["maxLength"] = MAX_STRING
        schema.update(
            type="array", items=items, maxItems=MAX_ITEMS, **{"x-kubernetes-list-type": "set"}
        )
        if "min_items" in metadata:
            schema["minItems"] = metadata["min_items"]
        return schema
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        schema.update(type="string", enum=[member.value for member in kind])
        return schema
    schema["type"] = _SCALARS[kind]
    if kind is str:
        schema["maxLength"] = MAX_STRING
    for rule, key in (("pattern", "pattern"), ("minimum", "minimum"), ("maximum", "maximum")):
        if rule in metadata:
            schema[key] = metadata[rule]
    return schema


def _object_schema(cls: type, path: str, defaults: Any = None) -> dict[str, Any]:
    """`defaults`: the object this one defaults to as a whole, when it is a field's default
    object: its values become its fields' defaults, so that they apply field by field (a
    trainer given only memory keeps the trainer's cpu, not ComponentResources')."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        key = camel(field.name)
        child_path = f"{path}.{key}" if path else key
        default = field.default if defaults is None else getattr(defaults, field.name)
        schema = _field_schema(hints[field.name], field.metadata, child_path, default)
        if default is not dataclasses.MISSING and default is not None:
            if dataclasses.is_dataclass(default):
                # The whole nested default: Resources' members differ from their class defaults.
                schema["default"] = _without_nulls(to_mapping(default))
            else:
                schema["default"] = _default(default)
        elif field.default_factory is not dataclasses.MISSING:
            schema["default"] = field.default_factory()
        elif field.default is dataclasses.MISSING:
            required.append(key)
        properties[key] = schema
    schema_out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema_out["required"] = required
    if path in CEL_RULES:
        schema_out["x-kubernetes-validations"] = CEL_RULES[path]
    return schema_out


def spec_schema() -> dict[str, Any]:
    """The structural schema of `.spec`."""
    schema = _object_schema(CryptoPipelineSpec, "")
    schema["description"] = (
        "What one CryptoPipeline runs: a symbol's trades, candles, model and dashboard."
    )
    return schema


def crd_names() -> dict[str, Any]:
    return {
        "group": API_GROUP,
        "version": API_VERSION,
        "kind": KIND,
        "plural": PLURAL,
        "shortNames": SHORT_NAMES,
        "categories": CATEGORIES,
    }
