"""Interval and watermark strings of the spec ("1m", "30s", "500ms") as milliseconds."""

from __future__ import annotations

import re

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^([1-9][0-9]*)(ms|s|m|h|d)$")


def to_millis(text: str) -> int:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 30s, 1m, 1h or 1d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def spark_delay(text: str) -> str:
    """The watermark delay in the form `withWatermark` reads."""
    return f"{to_millis(text)} milliseconds"
