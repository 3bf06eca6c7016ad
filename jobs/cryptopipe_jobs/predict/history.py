"""The recent candles the predictor keeps, deduplicated by (symbol, interval, window_start).

Kafka delivers at least once, so the same final candle may come more than once; the first copy
is kept (a final candle does not change). Non-final candles and candles of another symbol or
interval are refused. The frame handed to a forecaster is the newest run of consecutive windows,
so a missing candle never turns into a wrong return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import pandas as pd

from cryptopipe_model.features import CANDLE_COLUMNS


class Added(Enum):
    NEWEST = "newest"  # a new candle after every kept one: forecast from it
    OLDER = "older"  # a new candle that fills in behind the newest
    DUPLICATE = "duplicate"
    NOT_FINAL = "not final"
    OTHER_STREAM = "other symbol or interval"


def candle_row(record: dict[str, Any]) -> dict[str, Any]:
    """A decoded Candle record -> one row of the model's candle frame."""
    return {column: record[column] for column in CANDLE_COLUMNS}


@dataclass
class CandleHistory:
    symbol: str
    interval: pd.Timedelta
    capacity: int
    _rows: dict[datetime, dict[str, Any]] = field(default_factory=dict, repr=False)
    _events: dict[datetime, datetime] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self._rows)

    def newest(self) -> datetime | None:
        return max(self._rows) if self._rows else None

    def add(self, record: dict[str, Any], interval_name: str) -> Added:
        if record["symbol"] != self.symbol or record["interval"] != interval_name:
            return Added.OTHER_STREAM
        if not record["is_final"]:
            return Added.NOT_FINAL
        start: datetime = record["window_start"]
        if start in self._rows:
            return Added.DUPLICATE
        newest = self.newest()
        self._rows[start] = candle_row(record)
        self._events[start] = record["event_time"]
        for old in sorted(self._rows)[: max(0, len(self._rows) - self.capacity)]:
            del self._rows[old], self._events[old]
        if start not in self._rows:
            return Added.OLDER  # older than everything kept: dropped at once
        return Added.NEWEST if newest is None or start > newest else Added.OLDER

    def event_time(self, start: datetime) -> datetime:
        return self._events[start]

    def contiguous_frame(self) -> pd.DataFrame:
        """The newest run of consecutive candles, oldest first, as a candle frame."""
        starts = sorted(self._rows)
        first = len(starts) - 1
        while first > 0 and starts[first] - starts[first - 1] == self.interval:
            first -= 1
        rows = [self._rows[s] for s in starts[first:]] if starts else []
        frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
        frame["window_start"] = pd.to_datetime(frame["window_start"], utc=True)
        return frame
