"""Whether a new CustomResourceDefinition may replace the one a cluster serves (standard library).

`scripts/cluster` applies the operator chart's CRDs server-side before `helm upgrade` (helm never
upgrades a chart's `crds/`), and refuses a change that would break what is stored or what
clients send:
- the group, the kinds' names or the scope change;
- a served version is removed or no longer served;
- the version objects are stored in disappears (they could not be read any more);
- within a version kept: a field is removed, a field's type changes, a field becomes required,
  or an enum loses values.
New optional fields, new versions and wider enums are compatible. Tightened bounds or patterns
are not checked: the API server validates stored objects only when they are written again.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _versions(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in crd.get("spec", {}).get("versions", [])}


def _storage(crd: dict[str, Any]) -> str | None:
    return next((name for name, v in _versions(crd).items() if v.get("storage")), None)


def schema_problems(old: Schema, new: Schema, path: str = "") -> list[str]:
    """What `new` breaks of `old` (two openAPIV3Schema nodes), field by field."""
    where = path or "."
    problems: list[str] = []
    if old.get("type") and new.get("type") and old["type"] != new["type"]:
        return [f"{where}: type {old['type']} -> {new['type']}"]
    if "enum" in old and "enum" in new:
        lost = [value for value in old["enum"] if value not in new["enum"]]
        if lost:
            problems.append(f"{where}: enum loses {lost}")
    old_properties: dict[str, Schema] = old.get("properties", {})
    new_properties: dict[str, Schema] = new.get("properties", {})
    if old_properties and not new.get("x-kubernetes-preserve-unknown-fields"):
        for name in old_properties:
            if name not in new_properties:
                problems.append(f"{path}.{name}: removed")
    newly_required = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    problems += [f"{path}.{name}: newly required" for name in newly_required]
    for name, old_child in old_properties.items():
        if name in new_properties:
            problems += schema_problems(old_child, new_properties[name], f"{path}.{name}")
    if "items" in old and "items" in new:
        problems += schema_problems(old["items"], new["items"], f"{path}[]")
    return problems


def problems(served: dict[str, Any], proposed: dict[str, Any]) -> list[str]:
    """Why `proposed` may not replace `served`; empty when the change is compatible."""
    found: list[str] = []
    old_spec, new_spec = served.get("spec", {}), proposed.get("spec", {})
    for key in ("group", "scope"):
        if old_spec.get(key) != new_spec.get(key):
            found.append(f"spec.{key}: {old_spec.get(key)} -> {new_spec.get(key)}")
    old_names, new_names = old_spec.get("names", {}), new_spec.get("names", {})
    for key in ("kind", "plural"):
        if old_names.get(key) != new_names.get(key):
            found.append(f"spec.names.{key}: {old_names.get(key)} -> {new_names.get(key)}")
    old_versions, new_versions = _versions(served), _versions(proposed)
    for name, version in old_versions.items():
        if not version.get("served"):
            continue
        if name not in new_versions:
            found.append(f"version {name}: removed while served")
        elif not new_versions[name].get("served"):
            found.append(f"version {name}: no longer served")
    storage = _storage(served)
    if storage is not None and storage not in new_versions:
        found.append(f"version {storage}: objects are stored in it, and it is gone")
    for name in old_versions.keys() & new_versions.keys():
        old_schema = old_versions[name].get("schema", {}).get("openAPIV3Schema", {})
        new_schema = new_versions[name].get("schema", {}).get("openAPIV3Schema", {})
        found += [f"version {name}: {p}" for p in schema_problems(old_schema, new_schema)]
    return found
