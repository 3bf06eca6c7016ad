"""Forecasts appended to HDFS as JSON lines, one file per symbol and day of made_at:
`<base>/forecasts/symbol=<SYMBOL>/date=<YYYY-MM-DD>/forecasts.jsonl`. Times are epoch
milliseconds, as in the Avro records. One predictor writes per symbol, so appends never race."""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptopipe_jobs.predict.records import json_ready

FILE = "forecasts.jsonl"


def forecast_path(base: str, record: dict[str, Any]) -> str:
    day = record["made_at"].date().isoformat()
    return posixpath.join(base, "forecasts", f"symbol={record['symbol']}", f"date={day}", FILE)


@dataclass(frozen=True)
class HdfsForecastSink:
    client: Any
    base: str

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        by_file: dict[str, list[str]] = defaultdict(list)
        for record in records:
            by_file[forecast_path(self.base, record)].append(json.dumps(json_ready(record)))
        for path, lines in by_file.items():
            data = ("\n".join(lines) + "\n").encode()
            if self.client.status(path, strict=False) is None:
                self.client.write(path, data=data)
            else:
                self.client.write(path, data=data, append=True)
