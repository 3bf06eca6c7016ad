"""Binance REST market data: historical trades for closing gaps in the live stream.

The HTTP call itself is blocking urllib run in a worker thread; waiting (rate limits, retries)
happens on the event loop with an injectable sleep, so a stop cancels it at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cryptopipe_jobs.backoff import Backoff
from cryptopipe_jobs.producer.frames import ParsedTrade, parse_frame
from cryptopipe_schemas.records import TradeRecord

log = logging.getLogger(__name__)

HISTORICAL_TRADES_PATH = "/api/v3/historicalTrades"
MAX_PAGE = 1000
RATE_LIMIT_STATUSES = (429, 418)
DEFAULT_RETRY_AFTER_S = 1.0

Sleep = Callable[[float], Awaitable[None]]


class BinanceRestError(Exception):
    """A REST call that failed for good: a 4xx answer, or a server still failing after retries."""

    def __init__(self, status: int | None, message: str, code: int | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        where = f"HTTP {status}" if status is not None else "no answer"
        detail = f" (code {code})" if code is not None else ""
        super().__init__(f"Binance REST {where}{detail}: {message}")


class InvalidRestTrade(ValueError):
    """A historical trade row that does not make a valid Trade record."""


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes
    retry_after: str | None


def http_get(url: str, headers: dict[str, str], timeout_s: float) -> HttpReply:
    """One blocking GET: HTTP error statuses come back as replies, network failures raise."""
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked by BinanceRest)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return HttpReply(response.status, response.read(), response.headers.get("Retry-After"))
    except urllib.error.HTTPError as error:
        with error:
            return HttpReply(error.code, error.read(), error.headers.get("Retry-After"))


def retry_after_seconds(value: str | None) -> float:
    """Binance sends whole seconds; anything unreadable waits a default second."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return seconds if seconds >= 0 else DEFAULT_RETRY_AFTER_S


def _error_of(reply: HttpReply) -> BinanceRestError:
    try:
        body = json.loads(reply.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("msg"), str):
        code = body.get("code")
        return BinanceRestError(reply.status, body["msg"], code if isinstance(code, int) else None)
    return BinanceRestError(reply.status, reply.body[:200].decode(errors="replace"))


def _trade_rows(reply: HttpReply) -> list[dict[str, Any]]:
    try:
        rows = json.loads(reply.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = f"historicalTrades answer is not JSON: {error}"
        raise BinanceRestError(reply.status, problem) from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BinanceRestError(reply.status, "historicalTrades answer is not a list of objects")
    return rows


class BinanceRest:
    """The few REST calls the producer needs, with Binance's rate-limit rules."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        transient_retries: int = 3,
        retry_base_s: float = 0.5,
        sleep: Sleep = asyncio.sleep,
        get: Callable[[str, dict[str, str], float], HttpReply] = http_get,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"REST base URL must be http or https, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if api_key:
            self.headers["X-MBX-APIKEY"] = api_key
        self.timeout_s = timeout_s
        self.transient_retries = transient_retries
        self.retry_base_s = retry_base_s
        self._sleep = sleep
        self._get = get
        self._jitter = jitter

    async def historical_trades(
        self, symbol: str, from_id: int | None = None, limit: int = MAX_PAGE
    ) -> list[dict[str, Any]]:
        """Trades of `symbol` from id `from_id` on (ascending), at most `limit` (1..1000)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}, not {limit}")
        query: dict[str, str | int] = {"symbol": symbol.upper(), "limit": limit}
        if from_id is not None:
            query["fromId"] = from_id
        url = f"{self.base_url}{HISTORICAL_TRADES_PATH}?{urllib.parse.urlencode(query)}"
        return _trade_rows(await self._call(url))

    async def _call(self, url: str) -> HttpReply:
        failures = 0
        while True:
            outcome = await self._attempt(url)
            if isinstance(outcome, HttpReply):
                return outcome
            failures += 1
            if failures > self.transient_retries:
                raise BinanceRestError(None, f"gave up after {failures} tries: {outcome}")
            await self._sleep(Backoff(self.retry_base_s, jitter=self._jitter).delay(failures))

    async def _attempt(self, url: str) -> HttpReply | str:
        """A success, or the text of a transient failure; waits out rate limits, raises on 4xx."""
        while True:
            try:
                reply = await asyncio.to_thread(self._get, url, self.headers, self.timeout_s)
            except OSError as error:  # refused, reset, timed out, DNS
                return f"{type(error).__name__}: {error}"
            if reply.status < 400:
                return reply
            if reply.status not in RATE_LIMIT_STATUSES:
                failure = _error_of(reply)
                if reply.status < 500:
                    raise failure
                return str(failure)
            wait = retry_after_seconds(reply.retry_after)
            log.warning("Binance REST %s: waiting %.1f s (Retry-After)", reply.status, wait)
            await self._sleep(wait)


def trade_record_from_rest(symbol: str, row: dict[str, Any], ingest_time_ms: int) -> TradeRecord:
    """A historicalTrades row as the same Trade record the live stream gives.

    The row goes through the live parser's checks; a backfilled trade's event time is its trade
    time, since REST has no event time.
    """
    event = {
        "e": "trade",
        "E": row.get("time"),
        "s": symbol.upper(),
        "t": row.get("id"),
        "p": row.get("price"),
        "q": row.get("qty"),
        "T": row.get("time"),
        "m": row.get("isBuyerMaker"),
        "M": row.get("isBestMatch"),
    }
    missing = [name for name in ("id", "price", "qty", "time", "isBuyerMaker") if name not in row]
    if missing:
        raise InvalidRestTrade(f"historical trade without {', '.join(missing)}")
    outcome = parse_frame(json.dumps(event).encode(), frozenset({symbol.upper()}), ingest_time_ms)
    if not isinstance(outcome, ParsedTrade):
        reason = getattr(outcome, "reason", type(outcome).__name__)
        raise InvalidRestTrade(f"historical trade: {reason}")
    return outcome.record
