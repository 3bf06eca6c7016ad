"""Does a live object still say everything its desired manifest says? (pure)

The operator applies a child only when it is missing or has drifted, so a steady pipeline costs
no writes. Drift is judged on the fields the operator sets: the API server's defaults and other
managers' fields are not drift. Quantities compare by value (`1Gi` == `1024Mi`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cryptopipe_schemas.quantities import parse_quantity


def quantity(value: Any) -> Decimal | None:
    """A quantity's value, from a number or a string such as `1Gi`; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def _same_scalar(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    a, b = quantity(desired), quantity(live)
    return a is not None and b is not None and a == b and isinstance(desired, str | int)


def _merge_key(items: list[Any]) -> str | None:
    for key in ("uid", "name"):
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths where `live` does not say what `desired` says (empty: no drift)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        out: list[str] = []
        for key, value in desired.items():
            child = f"{path}.{key}"
            if key not in live:
                if value is None or value is False or value in ({}, [], ""):
                    continue  # the server omits empty values and false defaults
                out.append(child)
            else:
                out += differences(value, live[key], child)
        return out
    if isinstance(desired, list):
        key = _merge_key(desired)
        if key is not None and isinstance(live, list):
            # Lists of named things (containers, ports, volumes, owner references) merge by key:
            # what others add next to ours (a sidecar, another owner) is not drift.
            by_key = {item.get(key): item for item in live if isinstance(item, dict)}
            out = []
            for item in desired:
                child = f"{path}[{key}={item[key]}]"
                out += (
                    differences(item, by_key[item[key]], child) if item[key] in by_key else [child]
                )
            return out
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        out = []
        for index, (a, b) in enumerate(zip(desired, live, strict=True)):
            out += differences(a, b, f"{path}[{index}]")
        return out
    return [] if _same_scalar(desired, live) else [path]


def drifted(desired: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    """What to put back: `["(missing)"]` when the child is gone."""
    if live is None:
        return ["(missing)"]
    out = differences(desired.get("metadata", {}), live.get("metadata", {}), ".metadata")
    for key, value in desired.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            out += differences(value, live.get(key), f".{key}")
    return out
