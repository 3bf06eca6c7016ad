"""Schema ids: derived from each schema's canonical form, or assigned by a schema registry.

With no registry every writer and reader derives the same ids (avro_schemas.schema_id). With a
Confluent-compatible registry (Confluent's, Apicurio's ccompat API, ...) the schemas are
registered under the record-name strategy (subject = full record name, e.g.
io.cryptopipe.Trade) and its ids are used instead, so registry-aware consumers resolve them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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
CACHE_DIR_ENV = "CRYPTOPIPE_SCHEMA_IDS_CACHE_DIR"

log = logging.getLogger(__name__)


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

    def readable_ids(self) -> dict[int, SchemaName]:
        """What a reader accepts: these ids and the derived ones, so records written before a
        pipeline moved to a registry stay readable (derived ids are 32-bit fingerprints; a
        registry counts up from 1)."""
        return {**SchemaIds.derived().names_by_id(), **self.names_by_id()}

    def to_json(self) -> str:
        return json.dumps({name.value: schema for name, schema in self.by_name.items()})

    @classmethod
    def from_json(cls, text: str) -> SchemaIds:
        data = json.loads(text)
        ids = {name: int(data[name.value]) for name in SchemaName}
        return cls(ids)


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


def cache_file(registry_url: str, cache_dir: Path | None = None) -> Path:
    """Where the ids last registered at `registry_url` are kept: `$CRYPTOPIPE_SCHEMA_IDS_CACHE_DIR`
    (the pods mount an emptyDir there, so a restarted container finds it), else the temp dir."""
    folder = cache_dir or Path(os.environ.get(CACHE_DIR_ENV) or tempfile.gettempdir())
    key = hashlib.sha256(registry_url.rstrip("/").encode()).hexdigest()[:16]
    return folder / f"cryptopipe-schema-ids-{key}.json"


def registered_ids(
    registry_url: str,
    *,
    cache: Path | None = None,
    wait_seconds: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SchemaIds:
    """The registry's ids for our schemas, registering them if needed.

    A registry that is briefly down is retried for `wait_seconds`; if it stays down, the ids
    this client last got from it (kept in `cache`) are used, since a registry never reassigns
    an id. With neither, RegistryError says both.
    """
    path = cache or cache_file(registry_url)
    deadline = clock() + wait_seconds
    delay = 0.5
    while True:
        try:
            ids = register_all(registry_url)
        except RegistryError as error:
            if clock() + delay > deadline:
                return _cached_ids(path, error)
            log.warning("schema registry not answering; retrying",
                        extra={"error": str(error), "retry_in_seconds": delay})  # fmt: skip
            sleep(delay)
            delay = min(delay * 2, 8.0)
            continue
        _save(path, ids)
        return ids


def _cached_ids(path: Path, error: RegistryError) -> SchemaIds:
    try:
        ids = SchemaIds.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as cache_error:
        raise RegistryError(f"{error}; and no cached schema ids ({cache_error})") from error
    log.warning("schema registry unreachable: using the ids cached at the last registration",
                extra={"error": str(error), "cache": str(path)})  # fmt: skip
    return ids


def _save(path: Path, ids: SchemaIds) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(ids.to_json(), encoding="utf-8")
        partial.replace(path)
    except OSError as error:  # a cache is a convenience: never fail a start over it
        log.warning("schema ids not cached", extra={"error": str(error), "cache": str(path)})


class ResolvingIds(Mapping[int, SchemaName]):
    """A reader's ids that never registers anything: the derived ids, and any other id looked
    up in the registry the first time a record carries it (as Confluent's deserializers do).
    An id the registry does not know, or that is none of our schemas, is missing; an
    unreachable registry is asked again on the next record."""

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url
        self._known: dict[int, SchemaName] = SchemaIds.derived().names_by_id()
        self._foreign: set[int] = set()

    def __getitem__(self, found_id: int) -> SchemaName:
        if found_id in self._known:
            return self._known[found_id]
        if found_id in self._foreign:
            raise KeyError(found_id)
        try:
            name = resolve(self.registry_url, found_id)
        except RegistryError as error:
            if "none of ours" in str(error) or "answered 404" in str(error):
                self._foreign.add(found_id)
            raise KeyError(found_id) from error
        self._known[found_id] = name
        return name

    def __iter__(self) -> Iterator[int]:
        return iter(dict(self._known))

    def __len__(self) -> int:
        return len(self._known)
