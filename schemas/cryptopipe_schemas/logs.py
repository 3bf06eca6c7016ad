"""One JSON log shape for every cryptopipe process (python-json-logger): an object per line
with `time` (UTC, milliseconds), `level`, `logger` and `message`, then whatever a call passed
in `extra=` (kopf's `k8s_ref` included) and `exc_info` when there is a traceback."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("asctime", "levelname", "name", "message")
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


class Formatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(list(FIELDS), rename_fields=RENAMED, json_default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def configure(level: str = "INFO", quiet: tuple[str, ...] = ()) -> None:
    """JSON lines on stderr at `level` for the root logger; the `quiet` libraries' loggers
    (chatty clients such as kafka or urllib3) at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
