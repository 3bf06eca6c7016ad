"""Consumer-side deduplication of candles by (symbol, interval, window_start).

The Kafka candle topics are at-least-once (see kafka_candles), so a reader keeps the first copy
of each window. Plain Python on decoded records: for the predictor, the dashboard and tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

CandleKey = tuple[str, str, dt.datetime]


def candle_key(record: Mapping[str, Any]) -> CandleKey:
    return (record["symbol"], record["interval"], record["window_start"])


class CandleDeduper:
    """Remembers the windows it has passed on. With a `retention`, per symbol and interval it
    forgets windows that start more than `retention` before the newest one, and refuses those as
    already delivered, so memory stays bounded on an endless topic."""

    def __init__(self, retention: dt.timedelta | None = dt.timedelta(days=2)) -> None:
        self._retention = retention
        self._seen: dict[tuple[str, str], set[dt.datetime]] = {}

    def accept(self, record: Mapping[str, Any]) -> bool:
        """True the first time a window is seen, False for a repeat."""
        symbol, interval, start = candle_key(record)
        starts = self._seen.setdefault((symbol, interval), set())
        if start in starts:
            return False
        if self._retention is not None and starts:
            newest = max(starts)
            if start < newest - self._retention:
                return False
            if start > newest:
                horizon = start - self._retention
                starts.difference_update({s for s in starts if s < horizon})
        starts.add(start)
        return True


def dedupe(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each window once, in the order first seen."""
    deduper = CandleDeduper(retention=None)
    return [record for record in records if deduper.accept(record)]
