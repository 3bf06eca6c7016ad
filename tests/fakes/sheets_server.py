"""A local Google Sheets: the part of the Sheets v4 REST API that gspread calls, and the OAuth
token endpoint of a service account, on 127.0.0.1 at an ephemeral port.

Served: POST /token (JWT bearer grant), GET /v4/spreadsheets/{id}, POST
/v4/spreadsheets/{id}:batchUpdate (addSheet), GET and PUT /v4/spreadsheets/{id}/values/{range},
POST /v4/spreadsheets/{id}/values:batchUpdate, POST /v4/spreadsheets/{id}/values/{range}:append.
Writes outside a sheet's grid are refused as Sheets refuses them; append inserts rows.
`fail_next` and `outage` inject 429 and 5xx answers, optionally after applying the request (an
answer lost on the way back).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CELL = re.compile(r"^([A-Z]+)(\d*)$")
_SPREADSHEET = re.compile(r"^/v4/spreadsheets/([^/:]+)(.*)$")


def column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


@dataclass
class Sheet:
    sheet_id: int
    title: str
    rows: int
    cols: int
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)  # (row, col), 1-based

    def properties(self, index: int) -> dict[str, Any]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.rows, "columnCount": self.cols},
        }

    def last_row(self) -> int:
        return max((row for row, _ in self.cells), default=0)

    def table(self) -> list[list[Any]]:
        """Every row from 1 to the last non-empty one, trailing empty cells trimmed."""
        out = []
        for row in range(1, self.last_row() + 1):
            values = [self.cells.get((row, col), "") for col in range(1, self.cols + 1)]
            while values and values[-1] == "":
                values.pop()
            out.append(values)
        return out


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Range:
    sheet: Sheet
    row1: int
    col1: int
    row2: int | None  # None: to the end
    col2: int | None

    def a1(self) -> str:
        end_row = self.row2 if self.row2 is not None else self.sheet.rows
        end_col = self.col2 if self.col2 is not None else self.sheet.cols
        title = self.sheet.title.replace("'", "''")
        return (
            f"'{title}'!{column_letters(self.col1)}{self.row1}:{column_letters(end_col)}{end_row}"
        )


class Spreadsheet:
    def __init__(self, spreadsheet_id: str, title: str = "cryptopipe") -> None:
        self.id = spreadsheet_id
        self.title = title
        self.sheets: list[Sheet] = [Sheet(0, "Sheet1", 1000, 26)]
        self._next_id = 1

    def metadata(self) -> dict[str, Any]:
        return {
            "spreadsheetId": self.id,
            "properties": {"title": self.title, "locale": "en_US", "timeZone": "Etc/UTC"},
            "sheets": [{"properties": s.properties(i)} for i, s in enumerate(self.sheets)],
        }

    def sheet(self, title: str) -> Sheet:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        raise ApiError(400, f"Unable to parse range: {title}")

    def add_sheet(self, properties: dict[str, Any]) -> Sheet:
        title = properties.get("title") or f"Sheet{self._next_id + 1}"
        if any(s.title == title for s in self.sheets):
            raise ApiError(400, f'A sheet with the name "{title}" already exists.')
        grid = properties.get("gridProperties", {})
        sheet = Sheet(self._next_id, title, grid.get("rowCount", 1000), grid.get("columnCount", 26))
        self._next_id += 1
        self.sheets.append(sheet)
        return sheet

    def range(self, text: str) -> Range:
        if "!" in text:
            title, _, cells = text.rpartition("!")
            if title.startswith("'") and title.endswith("'"):
                title = title[1:-1].replace("''", "'")
            sheet = self.sheet(title)
        else:
            try:
                sheet, cells = self.sheet(text), ""
            except ApiError:
                sheet, cells = self.sheets[0], text
        if not cells:
            return Range(sheet, 1, 1, None, None)
        start, _, end = cells.partition(":")
        first = _CELL.match(start)
        last = _CELL.match(end or start)
        if first is None or last is None:
            raise ApiError(400, f"Unable to parse range: {text}")
        return Range(
            sheet,
            int(first.group(2) or 1),
            column_number(first.group(1)),
            int(last.group(2)) if last.group(2) else None,
            column_number(last.group(1)),
        )

    def read(self, where: Range, major: str) -> list[list[Any]]:
        table = where.sheet.table()
        last_row = where.row2 or len(table)
        rows = []
        for row in range(where.row1, last_row + 1):
            values = table[row - 1] if row <= len(table) else []
            end = where.col2 or len(values)
            rows.append(values[where.col1 - 1 : end])
        if major == "COLUMNS":
            width = max((len(r) for r in rows), default=0)
            rows = [[r[i] if i < len(r) else "" for r in rows] for i in range(width)]
        while rows and not any(v != "" for v in rows[-1]):
            rows.pop()
        for values in rows:
            while values and values[-1] == "":
                values.pop()
        return rows

    def write(self, where: Range, values: list[list[Any]]) -> dict[str, Any]:
        sheet = where.sheet
        last_row = where.row1 + len(values) - 1
        last_col = where.col1 + max((len(r) for r in values), default=1) - 1
        if last_row > sheet.rows or last_col > sheet.cols:
            raise ApiError(
                400,
                f"Range ({where.a1()}) exceeds grid limits. Max rows: {sheet.rows}, "
                f"max columns: {sheet.cols}",
            )
        for r, row in enumerate(values):
            for c, value in enumerate(row):
                sheet.cells[(where.row1 + r, where.col1 + c)] = value
        written = Range(sheet, where.row1, where.col1, last_row, last_col)
        return {
            "spreadsheetId": self.id,
            "updatedRange": written.a1(),
            "updatedRows": len(values),
            "updatedColumns": last_col - where.col1 + 1,
            "updatedCells": sum(len(r) for r in values),
        }

    def append(self, where: Range, values: list[list[Any]]) -> dict[str, Any]:
        sheet = where.sheet
        start = sheet.last_row() + 1
        sheet.rows = max(sheet.rows, start + len(values) - 1)  # INSERT_ROWS grows the grid
        updates = self.write(Range(sheet, start, where.col1, None, None), values)
        return {"spreadsheetId": self.id, "tableRange": where.a1(), "updates": updates}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int


@dataclass
class _Failure:
    status: int
    after_apply: bool


class SheetsServer:
    """Start with `start()`; `url` is the API endpoint, `token_uri` the OAuth token endpoint."""

    def __init__(self) -> None:
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.calls: list[Call] = []
        self.tokens_issued = 0
        self._failures: deque[_Failure] = deque()
        self._outage: _Failure | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def start(self) -> SheetsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def create(self, spreadsheet_id: str) -> Spreadsheet:
        with self._lock:
            self.spreadsheets[spreadsheet_id] = Spreadsheet(spreadsheet_id)
            return self.spreadsheets[spreadsheet_id]

    def fail_next(self, *statuses: int, after_apply: bool = False) -> None:
        with self._lock:
            self._failures.extend(_Failure(s, after_apply) for s in statuses)

    def outage(self, status: int = 503) -> None:
        with self._lock:
            self._outage = _Failure(status, False)

    def restore(self) -> None:
        with self._lock:
            self._outage = None

    def rows(self, spreadsheet_id: str, title: str) -> list[list[Any]]:
        with self._lock:
            return self.spreadsheets[spreadsheet_id].sheet(title).table()

    def titles(self, spreadsheet_id: str) -> list[str]:
        with self._lock:
            return [s.title for s in self.spreadsheets[spreadsheet_id].sheets]

    def failed_calls(self) -> int:
        return sum(1 for c in self.calls if c.status >= 400)

    # The HTTP side.

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_POST(self) -> None:
                server._serve(self, "POST")

            def do_PUT(self) -> None:
                server._serve(self, "PUT")

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self._lock:
            status, answer = self._answer(
                method, parsed, body, request.headers.get("Authorization")
            )
            self.calls.append(Call(method, parsed.path, status))
        payload = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=UTF-8")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _answer(
        self, method: str, parsed: urllib.parse.SplitResult, body: bytes, auth: str | None
    ) -> tuple[int, dict[str, Any]]:
        if parsed.path == "/token" and method == "POST":
            form = urllib.parse.parse_qs(body.decode())
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                return 400, {"error": "unsupported_grant_type"}
            self.tokens_issued += 1
            token = f"token-{self.tokens_issued}"
            return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        if not auth or not auth.startswith("Bearer token-"):
            return 401, _error(401, "Request is missing required authentication credential.")
        failure = self._outage or (self._failures.popleft() if self._failures else None)
        if failure is not None and not failure.after_apply:
            return failure.status, _error(failure.status, "injected failure")
        try:
            status, answer = 200, self._route(method, parsed, body)
        except ApiError as error:
            status, answer = error.status, _error(error.status, str(error))
        if failure is not None:
            return failure.status, _error(failure.status, "injected failure after applying")
        return status, answer

    def _route(self, method: str, parsed: urllib.parse.SplitResult, body: bytes) -> dict[str, Any]:
        match = _SPREADSHEET.match(parsed.path)
        if match is None:
            raise ApiError(404, f"no such endpoint {parsed.path}")
        spreadsheet = self.spreadsheets.get(match.group(1))
        if spreadsheet is None:
            raise ApiError(404, "Requested entity was not found.")
        rest = urllib.parse.unquote(match.group(2))
        query = dict(urllib.parse.parse_qsl(parsed.query))
        data = json.loads(body) if body else {}
        if rest == "" and method == "GET":
            return spreadsheet.metadata()
        if rest == ":batchUpdate" and method == "POST":
            replies = []
            for item in data.get("requests", []):
                if "addSheet" not in item:
                    raise ApiError(400, f"unsupported request {sorted(item)}")
                sheet = spreadsheet.add_sheet(item["addSheet"].get("properties", {}))
                index = spreadsheet.sheets.index(sheet)
                replies.append({"addSheet": {"properties": sheet.properties(index)}})
            return {"spreadsheetId": spreadsheet.id, "replies": replies}
        if rest == "/values:batchUpdate" and method == "POST":
            responses = [
                spreadsheet.write(spreadsheet.range(item["range"]), item["values"])
                for item in data.get("data", [])
            ]
            return {
                "spreadsheetId": spreadsheet.id,
                "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
                "responses": responses,
            }
        if rest.startswith("/values/") and rest.endswith(":append") and method == "POST":
            where = spreadsheet.range(rest[len("/values/") : -len(":append")])
            return spreadsheet.append(where, data.get("values", []))
        if rest.startswith("/values/") and method == "GET":
            text = rest[len("/values/") :]
            major = query.get("majorDimension", "ROWS")
            values = spreadsheet.read(spreadsheet.range(text), major)
            answer: dict[str, Any] = {"range": text, "majorDimension": major}
            if values:
                answer["values"] = values
            return answer
        if rest.startswith("/values/") and method == "PUT":
            return spreadsheet.write(spreadsheet.range(rest[len("/values/") :]), data["values"])
        raise ApiError(404, f"no such endpoint {method} {parsed.path}")


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": status, "message": message, "status": HTTPStatus(status).phrase.upper()}
    }


def service_account_file(token_uri: str, path: str) -> str:
    """A service-account key whose token endpoint is `token_uri` (a fresh RSA key each time)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {
        "type": "service_account",
        "project_id": "cryptopipe-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": "aggregator@cryptopipe-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    return path
