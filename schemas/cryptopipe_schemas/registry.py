"""Schema ids: derived from each schema's canonical form, or assigned by a schema registry.

With no registry every writer and reader derives the same ids (avro_schemas.schema_id). With a
Confluent-compatible registry (Confluent's, Apicurio's ccompat API, ...) the schemas are
registered under the record-name strategy (subject = full record name, e.g.
io.cryptopipe.Trade) and its ids are used instead, so registry-aware consumers resolve them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro.schema import to_parsing_canonical_form

from cryptopipe_schemas.avro_schemas import (
    NAMESPACE,
    SchemaName,
    canonical_form,
    schema_id,
    schema_json,
)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(RuntimeError):
    """The registry refused or could not be reached; the message says which and why."""


@dataclass(frozen=True)
class SchemaIds:
    by_name: Mapping[SchemaName, int]

    @classmethod
    def derived(cls) -> SchemaIds:
        return cls({name: schema_id(name) for name in SchemaName})

    def of(self, name: SchemaName) -> int:
        return self.by_name[name]

    def names_by_id(self) -> dict[int, SchemaName]:
        return {schema: name for name, schema in self.by_name.items()}


def subject(name: SchemaName) -> str:
    return f"{NAMESPACE}.{name.value}"


def _call(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    if not url.startswith(("http://", "https://")):
        raise RegistryError(f"schema registry URL {url!r} is not http(s)")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")  # noqa: S310
    request.add_header("Content-Type", CONTENT_TYPE)
    request.add_header("Accept", CONTENT_TYPE)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise RegistryError(f"{request.method} {url} answered {error.code}: {detail}") from error
    except (urllib.error.URLError, OSError) as error:
        raise RegistryError(f"schema registry at {url} unreachable: {error}") from error


def register_all(registry_url: str) -> SchemaIds:
    """Register every schema (idempotent: the same schema gets its existing id back)."""
    base = registry_url.rstrip("/")
    ids = {}
    for name in SchemaName:
        answer = _call(
            f"{base}/subjects/{subject(name)}/versions",
            {"schemaType": "AVRO", "schema": json.dumps(schema_json(name))},
        )
        ids[name] = int(answer["id"])
    return SchemaIds(ids)


def resolve(registry_url: str, found_id: int) -> SchemaName:
    """Which of our schemas the registry's id stands for, by canonical form."""
    answer = _call(f"{registry_url.rstrip('/')}/schemas/ids/{found_id}")
    canonical = to_parsing_canonical_form(json.loads(answer["schema"]))
    for name in SchemaName:
        if canonical_form(name) == canonical:
            return name
    raise RegistryError(f"schema id {found_id} in the registry is none of ours")
