"""Binance live trades: combined-stream websockets, gap closing from REST, dedupe by trade id.

Per symbol, `last_ids[symbol]` is the last trade id already handed to the sink. A live trade
at or below it is a duplicate; one more than a step above it opens a gap that REST closes
before the live trade goes out. Every reconnect therefore heals itself at the first live trade
of each symbol, and the sink sees strictly increasing ids per symbol.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cryptopipe_jobs.backoff import Backoff
from cryptopipe_jobs.producer.binance_rest import (
    MAX_PAGE,
    BinanceRest,
    InvalidRestTrade,
    trade_record_from_rest,
)
from cryptopipe_jobs.producer.frames import (
    ControlMessage,
    ParsedTrade,
    Rejected,
    ServerShutdown,
    parse_frame,
)
from cryptopipe_jobs.producer.sink import TradeSink
from cryptopipe_jobs.producer.transactions import DeliveryError
from cryptopipe_schemas.records import TradeRecord

log = logging.getLogger(__name__)

MAX_STREAMS_PER_CONNECTION = 1024


@dataclass(frozen=True)
class BinanceConfig:
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    api_key: str | None = None
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_connection_age_s: float = 23.5 * 3600  # Binance cuts every connection at 24 h
    streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    # Servers commonly refuse request lines over 8 KiB, so long symbol lists split earlier.
    max_path_length: int = 8000
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    # Our own keepalive pings (one per interval is well inside the 5 messages/s limit).
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    max_queue: int = 4096
    rest_timeout_s: float = 10.0
    rest_page_limit: int = MAX_PAGE
    rest_transient_retries: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.streams_per_connection <= MAX_STREAMS_PER_CONNECTION:
            raise ValueError(f"streams_per_connection must be 1..{MAX_STREAMS_PER_CONNECTION}")
        if not 1 <= self.rest_page_limit <= MAX_PAGE:
            raise ValueError(f"rest_page_limit must be 1..{MAX_PAGE}")
        if self.backoff_base_s <= 0 or self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff needs 0 < backoff_base_s <= backoff_max_s")
        if self.max_connection_age_s <= 0:
            raise ValueError("max_connection_age_s must be positive")


class SourceEvents(Protocol):
    """What a metrics layer may observe; every method is called on the event loop."""

    def reconnected(self, reason: str) -> None: ...

    def message_in(self, symbol: str) -> None: ...

    def event_lag(self, symbol: str, lag_ms: int) -> None: ...

    def backfilled(self, symbol: str, count: int) -> None: ...

    def duplicate_dropped(self, symbol: str) -> None: ...

    def dead_letter(self, category: str) -> None: ...


class NoEvents:
    def reconnected(self, reason: str) -> None:
        pass

    def message_in(self, symbol: str) -> None:
        pass

    def event_lag(self, symbol: str, lag_ms: int) -> None:
        pass

    def backfilled(self, symbol: str, count: int) -> None:
        pass

    def duplicate_dropped(self, symbol: str) -> None:
        pass

    def dead_letter(self, category: str) -> None:
        pass


# Reason texts carry values; metrics get a bounded label from their first matching phrase.
_CATEGORIES = (
    ("not JSON", "not_json"),
    ("not an object", "not_object"),
    ("combined-stream frame", "bad_wrapper"),
    ("is not 'trade'", "not_trade"),
    ("missing field", "missing_field"),
    ("must be", "wrong_type"),
    ("unknown symbol", "unknown_symbol"),
    ("does not carry", "stream_mismatch"),
    ("negative", "negative_id"),
    ("not a time", "bad_time"),
    ("not positive", "not_positive"),
    ("not a decimal", "not_decimal"),
    ("not a finite", "not_finite"),
    ("too large", "too_large"),
    ("decimal places", "too_precise"),
    ("historical trade", "bad_rest_trade"),
)


DEAD_LETTER_CATEGORIES = (*(label for _, label in _CATEGORIES), "other")


def reason_category(reason: str) -> str:
    return next((label for phrase, label in _CATEGORIES if phrase in reason), "other")


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


def stream_url(ws_url: str, symbols: list[str]) -> str:
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(stream_name(s) for s in symbols)}"


def connection_groups(config: BinanceConfig, symbols: list[str]) -> Iterator[list[str]]:
    """Symbols per connection, within the stream count and the request-path length."""
    group: list[str] = []
    for symbol in symbols:
        candidate = [*group, symbol]
        too_many = len(candidate) > config.streams_per_connection
        too_long = len(stream_url("", candidate)) > config.max_path_length
        if group and (too_many or too_long):
            yield group
            candidate = [symbol]
        group = candidate
    if group:
        yield group


def _stream_of(raw: bytes) -> str | None:
    try:
        message = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    stream = message.get("stream") if isinstance(message, dict) else None
    return stream if isinstance(stream, str) else None


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


class _SymbolLedger:
    """Per-symbol progress and the publishing rules; shared by all connections."""

    def __init__(
        self,
        sink: TradeSink,
        last_ids: dict[str, int],
        rest: BinanceRest,
        page_limit: int,
        events: SourceEvents,
        now_ms: Callable[[], int],
    ) -> None:
        self.sink = sink
        self.last_ids = last_ids
        self.rest = rest
        self.page_limit = page_limit
        self.events = events
        self.now_ms = now_ms

    async def live_trade(self, record: TradeRecord) -> None:
        symbol, trade_id = record["symbol"], record["trade_id"]
        last = self.last_ids.get(symbol)
        if last is not None and trade_id > last + 1:
            await self.close_gap(symbol, trade_id)
            last = self.last_ids.get(symbol)
        if last is not None and trade_id <= last:
            self.events.duplicate_dropped(symbol)
            return
        self._publish(record)
        self.events.event_lag(symbol, _ms(record["ingest_time"]) - _ms(record["event_time"]))

    async def close_gap(self, symbol: str, before_id: int) -> None:
        """Publish ids last+1 .. before_id-1 from REST, page by page."""
        while (last := self.last_ids[symbol]) < before_id - 1:
            limit = min(self.page_limit, before_id - 1 - last)
            rows = await self.rest.historical_trades(symbol, from_id=last + 1, limit=limit)
            published = self._publish_rows(symbol, rows, before_id)
            if self.last_ids[symbol] == last:
                log.error("REST has no trades of %s from id %d on; gap left open", symbol, last + 1)
                return
            self.events.backfilled(symbol, published)

    def _publish_rows(self, symbol: str, rows: list[dict[str, Any]], before_id: int) -> int:
        published = 0
        for row in rows:
            trade_id = row.get("id")
            if not isinstance(trade_id, int) or isinstance(trade_id, bool):
                self._dead_letter(json.dumps(row).encode(), "historical trade without an id", None)
                continue
            if trade_id >= before_id:
                break
            if trade_id <= self.last_ids[symbol]:
                continue
            try:
                record = trade_record_from_rest(symbol, row, self.now_ms())
            except InvalidRestTrade as error:
                self._dead_letter(json.dumps(row).encode(), str(error), None, row.get("time"))
                self.last_ids[symbol] = trade_id  # accounted for, as a dead letter
                continue
            self._publish(record)
            published += 1
        return published

    def _publish(self, record: TradeRecord) -> None:
        # No await between the two: a cancellation cannot separate publishing from progress.
        self.sink.publish_trade(record)
        self.last_ids[record["symbol"]] = record["trade_id"]

    def rejected(self, raw: bytes, rejected: Rejected) -> None:
        self._dead_letter(raw, rejected.reason, _stream_of(raw), rejected.event_time_ms)

    def _dead_letter(
        self, raw: bytes, reason: str, stream: str | None, event_time_ms: Any = None
    ) -> None:
        event_time = event_time_ms if isinstance(event_time_ms, int) else None
        self.sink.publish_dead_letter(raw, reason, stream=stream, event_time_ms=event_time)
        self.events.dead_letter(reason_category(reason))


class _ConnectionLost(Exception):
    pass


class _StreamConnection:
    """One combined-stream connection for a group of symbols, kept alive until cancelled."""

    def __init__(
        self,
        config: BinanceConfig,
        symbols: list[str],
        ledger: _SymbolLedger,
        rand: Callable[[], float],
    ) -> None:
        self.config = config
        self.symbols = frozenset(symbols)
        self.url = stream_url(config.ws_url, symbols)
        self.ledger = ledger
        self.events = ledger.events
        self.rand = rand
        self.failures = 0

    async def run(self) -> None:
        ws: ClientConnection | None = None
        try:
            while True:
                if ws is None:
                    ws = await self._open_with_backoff()
                ending = await self._pump(ws)
                self.events.reconnected(ending)
                log.info("Binance stream %s: reconnecting (%s)", self.url, ending)
                if ending in ("max_age", "server_shutdown"):
                    ws = await self._replace(ws)
                else:
                    await self._close(ws)
                    ws = None
                    await self._pause()
        finally:
            if ws is not None:
                await self._close(ws)

    async def _open(self) -> ClientConnection:
        return await connect(
            self.url,
            open_timeout=self.config.open_timeout_s,
            close_timeout=self.config.close_timeout_s,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.ping_timeout_s,
            max_queue=self.config.max_queue,
            compression=None,
        )

    async def _open_with_backoff(self) -> ClientConnection:
        while True:
            try:
                return await self._open()
            except Exception as error:  # refused, timed out, rejected handshake, ...
                log.warning("Binance stream %s: cannot connect: %s", self.url, error)
            self.events.reconnected("connect_failed")
            await self._pause()

    async def _replace(self, old: ClientConnection) -> ClientConnection:
        """Make before break: the new connection is subscribed before the old one closes.

        Trades the old connection had buffered but we had not read are closed as a gap from REST.
        """
        try:
            new = await self._open()
        except Exception as error:
            log.warning("Binance stream %s: cannot open a replacement: %s", self.url, error)
            await self._close(old)
            await self._pause()
            return await self._open_with_backoff()
        await self._close(old)
        return new

    async def _pause(self) -> None:
        self.failures += 1
        delay = Backoff(self.config.backoff_base_s, self.config.backoff_max_s, self.rand).delay(
            self.failures
        )
        await asyncio.sleep(delay)

    async def _close(self, ws: ClientConnection) -> None:
        try:
            await ws.close()
        except Exception as error:  # closing a broken connection may fail; it is gone either way
            log.debug("closing %s: %s", self.url, error)

    async def _pump(self, ws: ClientConnection) -> str:
        """Handle frames until the connection must end; returns why."""
        deadline = asyncio.get_running_loop().time() + self.config.max_connection_age_s
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        raw = await ws.recv(decode=False)
                except TimeoutError:
                    return "max_age"
                if await self._handle(raw):
                    return "server_shutdown"
        except ConnectionClosed:
            return "closed"
        except DeliveryError:
            raise  # Kafka refused a record or fenced us: reconnecting cannot help
        except Exception:
            log.exception("Binance stream %s: error while handling a frame", self.url)
            return "error"

    async def _handle(self, raw: bytes) -> bool:
        """One frame; True when the server announced its shutdown."""
        outcome = parse_frame(raw, self.symbols, self.ledger.now_ms())
        if isinstance(outcome, ParsedTrade):
            self.failures = 0  # a connection that delivers data is a healthy one
            self.events.message_in(outcome.record["symbol"])
            await self.ledger.live_trade(outcome.record)
        elif isinstance(outcome, Rejected):
            self.events.message_in(self._symbol_of(_stream_of(raw)))
            self.ledger.rejected(raw, outcome)
        elif isinstance(outcome, ServerShutdown):
            return True
        elif isinstance(outcome, ControlMessage):
            log.debug("Binance stream %s: control reply %s", self.url, outcome.body)
        return False

    def _symbol_of(self, stream: str | None) -> str:
        symbol = stream.split("@", 1)[0].upper() if stream else ""
        return symbol if symbol in self.symbols else "unknown"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def stream_trades(
    config: BinanceConfig,
    symbols: list[str],
    sink: TradeSink,
    last_ids: dict[str, int],
    stop: asyncio.Event,
    events: SourceEvents | None = None,
    *,
    rest: BinanceRest | None = None,
    rand: Callable[[], float] = random.random,
    now_ms: Callable[[], int] = _wall_ms,
) -> None:
    """Publish live trades of `symbols` to `sink` until `stop` is set.

    `last_ids` (upper-case symbol -> last trade id already published; absent: start from live)
    is updated in place as trades go out, so it always says where each symbol stands.
    """
    wanted = list(dict.fromkeys(s.upper() for s in symbols))
    if not wanted:
        raise ValueError("no symbols to stream")
    events = events if events is not None else NoEvents()
    if rest is None:
        rest = BinanceRest(
            config.rest_url,
            api_key=config.api_key,
            timeout_s=config.rest_timeout_s,
            transient_retries=config.rest_transient_retries,
            retry_base_s=config.backoff_base_s,
            jitter=rand,
        )
    ledger = _SymbolLedger(sink, last_ids, rest, config.rest_page_limit, events, now_ms)
    connections = [
        _StreamConnection(config, group, ledger, rand)
        for group in connection_groups(config, wanted)
    ]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(connection.run()) for connection in connections]
        await stop.wait()
        for task in tasks:
            task.cancel()
