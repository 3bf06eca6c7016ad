"""Durations of a spec as milliseconds: watermarks ("500ms", "30s") and candle intervals ("1m").

One grammar, a whole positive number and a unit, for every reader of a spec: the spec's
validation (its pattern), the aggregation's windows and watermark, training and prediction.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# A candle interval is whole seconds at least; a watermark at most hours.
INTERVAL_UNITS = ("s", "m", "h", "d")
WATERMARK_UNITS = ("ms", "s", "m", "h")
_DURATION = re.compile(r"([1-9][0-9]*)(ms|s|m|h|d)")


def duration_pattern(units: Iterable[str]) -> str:
    """The regular expression (as the CRD carries it) of a duration in one of `units`."""
    return rf"^[1-9][0-9]*({'|'.join(units)})$"


def _millis(text: str, units: Collection[str]) -> int | None:
    match = _DURATION.fullmatch(text)
    if match is None or match.group(2) not in units:
        return None
    return int(match.group(1)) * UNIT_MS[match.group(2)]


def parse_duration(text: str) -> int:
    """'500ms', '30s', '1m', '1h' or '1d' as milliseconds; ValueError for anything else."""
    millis = _millis(text, UNIT_MS)
    if millis is None:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 30s, 1m, 1h or 1d")
    return millis


def parse_interval(text: str) -> int:
    """A candle interval ('30s', '1m', '1h', '1d') as milliseconds; ValueError otherwise."""
    millis = _millis(text, INTERVAL_UNITS)
    if millis is None:
        raise ValueError(f"{text!r} is not an interval such as 1m, 5m or 1h")
    return millis


# Kafka retention: hours or days (an hour at least: a restarted consumer must find its trades),
# or `forever`.
RETENTION_UNITS = ("h", "d")
FOREVER = "forever"
RETENTION_PATTERN = rf"^({FOREVER}|[1-9][0-9]*({'|'.join(RETENTION_UNITS)}))$"


def parse_retention(text: str) -> int:
    """A retention ('12h', '7d' or 'forever') as Kafka's retention.ms: -1 for forever."""
    if text == FOREVER:
        return -1
    millis = _millis(text, RETENTION_UNITS)
    if millis is None:
        raise ValueError(f"{text!r} is not a retention such as 12h, 7d or {FOREVER}")
    return millis
