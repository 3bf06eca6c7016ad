"""A local Binance for tests: the combined-stream websocket and REST historicalTrades.

Both listen on 127.0.0.1 at ephemeral ports and speak Binance's wire formats. One trade ledger
per symbol (ids increase by one) feeds both, so REST can serve what the live stream missed or
withheld. The websocket side runs on its own asyncio loop in a background thread, REST in a
stdlib HTTP server thread; every public method is safe to call from the test's thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

MAX_STREAMS = 1024
MAX_LIMIT = 1000
STREAM_NAME = re.compile(r"^([a-z0-9]+)@trade$")
T = TypeVar("T")


class _Close:
    """Outbox marker: a clean close (1001, going away) or a dropped socket."""

    def __init__(self, abrupt: bool) -> None:
        self.abrupt = abrupt


@dataclass(eq=False)
class _Client:
    connection: ServerConnection
    symbols: frozenset[str]
    outbox: asyncio.Queue[str | bytes | _Close] = field(default_factory=asyncio.Queue)


@dataclass
class _RateLimit:
    remaining: int = 0
    retry_after_s: int = 1
    status: int = 429


@dataclass(frozen=True)
class RestCall:
    path: str
    params: dict[str, str]
    status: int


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _json_error(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg}).encode()


class FakeBinance:
    def __init__(
        self,
        symbols: Iterable[str],
        *,
        history: int = 0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self._lock = threading.Lock()
        self._first_id = {s: 1_000_000 * (i + 1) for i, s in enumerate(self.symbols)}
        self._ledger: dict[str, list[dict[str, Any]]] = {s: [] for s in self.symbols}
        self._withheld: dict[str, set[int]] = {s: set() for s in self.symbols}
        self._rate_limit = _RateLimit()
        self.rest_calls: list[RestCall] = []
        self.stream_paths: list[str] = []
        self._clients: set[_Client] = set()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._ws_server: Server | None = None
        self._rest_server: ThreadingHTTPServer | None = None
        self._rest_thread: threading.Thread | None = None
        self._ticker: asyncio.Task[None] | None = None
        for symbol in self.symbols:
            self._append(symbol, history)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeBinance:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ws_server = self._call(self._serve_ws())
        self._rest_server = ThreadingHTTPServer(("127.0.0.1", 0), self._rest_handler())
        self._rest_thread = threading.Thread(
            target=self._rest_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._rest_thread.start()
        return self

    def stop(self) -> None:
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.server_close()
        if self._thread is not None:
            self._call(self._close_ws())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        assert self._ws_server is not None, "not started"
        port = next(iter(self._ws_server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    @property
    def rest_url(self) -> str:
        assert self._rest_server is not None, "not started"
        return f"http://127.0.0.1:{self._rest_server.server_address[1]}"

    # -- the trade ledger --------------------------------------------------------------------

    def emit(self, count: int = 1, symbols: Iterable[str] | None = None) -> dict[str, range]:
        """`count` new trades per symbol, streamed live except withheld ids; their ids."""
        frames: list[tuple[str, str]] = []
        made: dict[str, range] = {}
        with self._lock:
            for symbol in [s.upper() for s in symbols] if symbols else self.symbols:
                made[symbol] = ids = self._append(symbol, count)
                frames += [
                    (symbol, self._trade_frame(symbol, self._row(symbol, trade_id)))
                    for trade_id in ids
                    if trade_id not in self._withheld[symbol]
                ]
        self._loop.call_soon_threadsafe(self._broadcast, frames)
        return made

    def withhold_next(self, symbol: str, count: int) -> range:
        """The next `count` ids of `symbol` go to the ledger (and REST) but not to the stream."""
        symbol = symbol.upper()
        with self._lock:
            start = self._next_id(symbol)
            ids = range(start, start + count)
            self._withheld[symbol].update(ids)
        return ids

    def last_id(self, symbol: str) -> int:
        with self._lock:
            return self._next_id(symbol.upper()) - 1

    def ids(self, symbol: str) -> list[int]:
        with self._lock:
            return [row["id"] for row in self._ledger[symbol.upper()]]

    def start_ticking(self, per_second: float) -> None:
        """Emit one trade per symbol every 1/per_second seconds until stop_ticking()."""
        self._call(self._start_ticker(1 / per_second))

    def stop_ticking(self) -> None:
        self._call(self._stop_ticker())

    # -- what tests do to the connections ----------------------------------------------------

    def client_count(self) -> int:
        return self._call(self._count_clients())

    def disconnect_all(self) -> int:
        """Drop every client's socket without a close frame, after what is already queued."""
        return self._call(self._enqueue_all([_Close(abrupt=True)]))

    def shutdown_all(self) -> int:
        """Announce `serverShutdown` to every client, then close cleanly (1001)."""
        notice = json.dumps({"e": "serverShutdown", "E": _ms()})
        return self._call(self._enqueue_all([notice, _Close(abrupt=False)]))

    def inject(self, raw: str | bytes) -> int:
        """Send one raw frame to every client: text for str, binary for bytes."""
        return self._call(self._enqueue_all([raw]))

    def ping_all(self, payload: bytes, timeout_s: float = 2.0) -> int:
        """Ping every client with `payload`; how many answered with a matching pong in time."""
        return self._call(self._ping_all(payload, timeout_s))

    def rate_limit(self, requests: int, retry_after_s: int = 1, status: int = 429) -> None:
        """Answer the next `requests` REST calls with `status` (429 or 418) and Retry-After."""
        with self._lock:
            self._rate_limit = _RateLimit(requests, retry_after_s, status)

    # -- ledger internals (lock held) --------------------------------------------------------

    def _next_id(self, symbol: str) -> int:
        ledger = self._ledger[symbol]
        return ledger[-1]["id"] + 1 if ledger else self._first_id[symbol]

    def _append(self, symbol: str, count: int) -> range:
        start = self._next_id(symbol)
        for trade_id in range(start, start + count):
            price = (
                Decimal(97_000 if symbol.startswith("BTC") else 3_000)
                + Decimal(trade_id % 500) / 100
            )
            qty = Decimal(1 + trade_id % 7) / 1000
            now = _ms()
            self._ledger[symbol].append(
                {
                    "id": trade_id,
                    "price": f"{price:.8f}",
                    "qty": f"{qty:.8f}",
                    "quoteQty": f"{price * qty:.8f}",
                    "time": now,
                    "isBuyerMaker": trade_id % 3 == 0,
                    "isBestMatch": True,
                }
            )
        return range(start, start + count)

    def _row(self, symbol: str, trade_id: int) -> dict[str, Any]:
        return self._ledger[symbol][trade_id - self._first_id[symbol]]

    @staticmethod
    def _trade_frame(symbol: str, row: dict[str, Any]) -> str:
        data = {
            "e": "trade",
            "E": row["time"] + 1,
            "s": symbol,
            "t": row["id"],
            "p": row["price"],
            "q": row["qty"],
            "T": row["time"],
            "m": row["isBuyerMaker"],
            "M": row["isBestMatch"],
        }
        return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})

    # -- websocket side (on the loop) --------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _serve_ws(self) -> Server:
        return await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._check_request,
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_timeout_s,
            compression=None,
        )

    async def _close_ws(self) -> None:
        await self._stop_ticker()
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()

    def _streams(self, path: str) -> list[str] | None:
        parts = urllib.parse.urlsplit(path)
        if parts.path != "/stream":
            return None
        query = urllib.parse.parse_qs(parts.query).get("streams", [""])[0]
        return [name for name in query.split("/") if name]

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        streams = self._streams(request.path)
        if streams is None:
            return _http_error(HTTPStatus.NOT_FOUND, -1, "Not found.")
        if not streams or len(streams) > MAX_STREAMS:
            return _http_error(HTTPStatus.BAD_REQUEST, -1, f"Use 1..{MAX_STREAMS} streams.")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path if connection.request else ""
        with self._lock:
            self.stream_paths.append(path)
        wanted = {
            m.group(1).upper() for s in self._streams(path) or [] if (m := STREAM_NAME.match(s))
        }
        client = _Client(connection, frozenset(wanted & set(self.symbols)))
        self._clients.add(client)
        watcher = asyncio.create_task(self._on_closed(client))
        try:
            await self._write(client)
        finally:
            self._clients.discard(client)
            watcher.cancel()

    async def _on_closed(self, client: _Client) -> None:
        await client.connection.wait_closed()
        client.outbox.put_nowait(_Close(abrupt=False))

    async def _write(self, client: _Client) -> None:
        while True:
            item = await client.outbox.get()
            if isinstance(item, _Close):
                if item.abrupt and client.connection.transport is not None:
                    client.connection.transport.abort()
                else:
                    await client.connection.close(1001, "going away")
                return
            try:
                await client.connection.send(item)
            except ConnectionClosed:
                return

    def _broadcast(self, frames: list[tuple[str, str]]) -> None:
        for client in self._clients:
            for symbol, frame in frames:
                if symbol in client.symbols:
                    client.outbox.put_nowait(frame)

    async def _count_clients(self) -> int:
        return len(self._clients)

    async def _enqueue_all(self, items: list[str | bytes | _Close]) -> int:
        for client in self._clients:
            for item in items:
                client.outbox.put_nowait(item)
        return len(self._clients)

    async def _ping_all(self, payload: bytes, timeout_s: float) -> int:
        async def one(client: _Client) -> bool:
            try:
                waiter = await client.connection.ping(payload)
                await asyncio.wait_for(waiter, timeout_s)
            except (ConnectionClosed, TimeoutError):
                return False
            return True

        answers = await asyncio.gather(*(one(c) for c in list(self._clients)))
        return sum(answers)

    async def _start_ticker(self, interval_s: float) -> None:
        await self._stop_ticker()
        self._ticker = asyncio.create_task(self._tick(interval_s))

    async def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _tick(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.emit(1)

    # -- REST side (HTTP server threads) -----------------------------------------------------

    def _rest_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = fake._rest_answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _rest_answer(self, target: str) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(target)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        with self._lock:
            answer = self._rest_locked(parts.path, params)
            self.rest_calls.append(RestCall(parts.path, params, answer[0]))
        return answer

    def _rest_locked(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        limit = self._rate_limit
        if limit.remaining > 0:
            limit.remaining -= 1
            headers = {"Retry-After": str(limit.retry_after_s)}
            return limit.status, headers, _json_error(-1003, "Too many requests; use websocket.")
        if path != "/api/v3/historicalTrades":
            return 404, {}, _json_error(-1, "Not found.")
        symbol = params.get("symbol", "")
        if not symbol:
            return 400, {}, _json_error(-1102, "Mandatory parameter 'symbol' was not sent.")
        if symbol not in self._ledger:
            return 400, {}, _json_error(-1121, "Invalid symbol.")
        try:
            count = int(params.get("limit", "500"))
            from_id = int(params["fromId"]) if "fromId" in params else None
        except ValueError:
            return 400, {}, _json_error(-1100, "Illegal characters found in a parameter.")
        if not 1 <= count <= MAX_LIMIT:
            return 400, {}, _json_error(-1130, "Data sent for parameter 'limit' is not valid.")
        ledger = self._ledger[symbol]
        if from_id is None:
            rows = ledger[-count:]
        else:
            start = max(0, from_id - self._first_id[symbol])
            rows = ledger[start : start + count]
        return 200, {"X-MBX-USED-WEIGHT-1M": "25"}, json.dumps(rows).encode()


def _http_error(status: HTTPStatus, code: int, msg: str) -> Response:
    body = _json_error(code, msg)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
