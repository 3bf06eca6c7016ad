"""Upsert candles into Google Sheets: one worksheet per symbol and interval, one row per window.

Rows are keyed by window start (column A). Existing rows are rewritten in one values
batchUpdate per worksheet, new ones appended in one append call. After any failure the
worksheet's row index is read again before the next try, so a request that reached Sheets but
whose answer was lost turns into an update, never a second row.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import gspread
from gspread.utils import InsertDataOption, ValueInputOption, rowcol_to_a1

from cryptopipe_schemas.avro_schemas import CANDLE_FIELDS

log = logging.getLogger("cryptopipe.sheets")

# The Candle fields in the schema's order, less what every row of a worksheet shares: its
# symbol and interval (the worksheet's title) and is_final (only final candles are written).
COLUMNS = tuple(name for name in CANDLE_FIELDS if name not in {"symbol", "interval", "is_final"})
_UPDATED_ROW = re.compile(r"![A-Z]+(\d+)")


def worksheet_title(symbol: str, interval: str) -> str:
    return f"{symbol} {interval}"


def cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return "" if value is None else value


def sheet_row(candle: Mapping[str, Any]) -> list[Any]:
    return [cell(candle[name]) for name in COLUMNS]


def is_retryable(error: Exception) -> bool:
    """429 (quota) and 5xx are worth retrying; other API errors and network errors too."""
    if isinstance(error, gspread.exceptions.APIError):
        code = error.response.status_code
        return code == 429 or code >= 500
    return True


class SheetsWriter:
    def __init__(self, spreadsheet: gspread.Spreadsheet) -> None:
        self._spreadsheet = spreadsheet
        self._worksheets: dict[str, gspread.Worksheet] = {}
        self._rows: dict[str, dict[str, int]] = {}  # title -> window start -> row number

    def forget(self) -> None:
        """Drop cached row indexes (after a failure: the sheet may hold more than we know)."""
        self._rows.clear()

    def _worksheet(self, title: str) -> gspread.Worksheet:
        if title not in self._worksheets:
            try:
                sheet = self._spreadsheet.worksheet(title)
            except gspread.exceptions.WorksheetNotFound:
                sheet = self._spreadsheet.add_worksheet(title, rows=1, cols=len(COLUMNS))
            self._worksheets[title] = sheet
        return self._worksheets[title]

    def _row_index(self, title: str, sheet: gspread.Worksheet) -> dict[str, int]:
        if title not in self._rows:
            keys = sheet.col_values(1)
            if not keys:
                sheet.update([list(COLUMNS)], "A1", value_input_option=ValueInputOption.raw)
                keys = [COLUMNS[0]]
            self._rows[title] = {str(key): number for number, key in enumerate(keys, 1) if key}
        return self._rows[title]

    def upsert(self, candles: Sequence[Mapping[str, Any]]) -> int:
        """Write the candles; return how many rows were written."""
        by_title: dict[str, list[Mapping[str, Any]]] = {}
        for candle in candles:
            by_title.setdefault(worksheet_title(candle["symbol"], candle["interval"]), []).append(
                candle
            )
        for title, group in sorted(by_title.items()):
            self._upsert_sheet(title, sorted(group, key=lambda c: c["window_start"]))
        return len(candles)

    def _upsert_sheet(self, title: str, candles: Sequence[Mapping[str, Any]]) -> None:
        sheet = self._worksheet(title)
        index = self._row_index(title, sheet)
        last_column = rowcol_to_a1(1, len(COLUMNS))[:-1]
        updates, new_rows = [], {}
        for candle in candles:
            row = sheet_row(candle)
            number = index.get(row[0])
            if number is None:
                new_rows[row[0]] = row  # a window twice in one call: the later copy wins
            else:
                updates.append({"range": f"A{number}:{last_column}{number}", "values": [row]})
        if updates:
            sheet.batch_update(updates, value_input_option=ValueInputOption.raw)
        if new_rows:
            answer = sheet.append_rows(
                list(new_rows.values()),
                value_input_option=ValueInputOption.raw,
                insert_data_option=InsertDataOption.insert_rows,
                table_range="A1",
            )
            first = int(_UPDATED_ROW.search(answer["updates"]["updatedRange"]).group(1))  # type: ignore[union-attr]
            for offset, key in enumerate(new_rows):
                index[key] = first + offset
