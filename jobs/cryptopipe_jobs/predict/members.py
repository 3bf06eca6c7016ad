"""Whom a predictor serves: one pipeline (--spec, --registry), or a pool's members folder.

A pool's predictor finds each member's model registry from the member's identity, which the
rendered manifests in the folder carry (metadata.namespace and name), by the formula the trainer
writes with (schemas.storage.registry_path) under --registry-root.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from cryptopipe_jobs.spec_directory import spec_files
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, spec_from_document
from cryptopipe_schemas.storage import registry_path

log = logging.getLogger("cryptopipe.predict")


@dataclass(frozen=True)
class Member:
    spec: CryptoPipelineSpec
    registry: str  # a local folder, or an hdfs:// location

    @property
    def symbol(self) -> str:
        return self.spec.symbol


def member_from_manifest(document: object, registry_root: str) -> Member:
    """A member from a rendered CryptoPipeline manifest; SpecError when it lacks its identity."""
    spec = spec_from_document(document)
    metadata = document.get("metadata", {}) if isinstance(document, dict) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not name or not namespace:
        raise SpecError(["metadata: a pool member needs its name and namespace (its registry's)"])
    root = registry_root.rstrip("/")
    return Member(spec, f"{root}{registry_path(spec.sinks.hdfs.path, namespace, name)}")


def read_members(folder: Path, registry_root: str) -> list[Member]:
    """The folder's members, each symbol once; a file that does not parse is left out, logged."""
    members: dict[str, Member] = {}
    for path in spec_files(folder):
        try:
            member = member_from_manifest(yaml.safe_load(path.read_text()), registry_root)
        except (SpecError, OSError, yaml.YAMLError) as error:
            log.error("member left out", extra={"file": path.name, "problem": str(error)[:500]})
            continue
        members.setdefault(member.symbol, member)
    return [members[symbol] for symbol in sorted(members)]


def static_members(specs: Sequence[CryptoPipelineSpec], registry: str) -> list[Member]:
    return [Member(spec, registry) for spec in specs]
