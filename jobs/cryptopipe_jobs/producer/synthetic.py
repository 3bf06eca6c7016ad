"""Synthetic trades: a seeded random walk, live, for tests and benchmarks of many symbols.

Not market data, and labelled as such everywhere: the records' exchange is `synthetic`, the
spec's source kind is `synthetic`, and the dashboard says so. The bundled real history stays the
data of the replay source.

- Arrivals are a Poisson process at `rate` trades per second, `burst_factor` times faster while
  in a burst; bursts start and end at random (mean `burst_seconds` long, one every
  `calm_seconds` on average), as trading clusters in real markets.
- The log price moves by a normal step with standard deviation `volatility` * sqrt(seconds
  since the last trade), rounded to 8 significant digits.
- Sizes are log-normal (a long right tail, as real trade sizes), at least 1e-5.
- Event time is the clock's: the trades are live, not history.

Deterministic given the seed and where it resumes: the generator after trade id N is seeded from
(seed, symbol, N), so a restarted producer continues from its last committed trade and price.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from cryptopipe_jobs.producer.replay import ms_from_utc, utc_from_ms
from cryptopipe_schemas.records import TradeRecord
from cryptopipe_schemas.spec import SyntheticSource

EXCHANGE = "synthetic"
MIN_QUANTITY = Decimal("0.00001")


@dataclass(frozen=True)
class WalkState:
    trade_id: int  # the last trade's id (0 before the first)
    price: Decimal
    time_ms: int
    bursting: bool = False


def seeded(seed: int, symbol: str, trade_id: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{symbol}:{trade_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 (a simulation)


def significant(value: float, digits: int = 8) -> Decimal:
    """`value` to `digits` significant digits, and never finer than the records' scale (8)."""
    exponent = max(-8, math.floor(math.log10(abs(value))) - digits + 1)
    return Decimal(value).quantize(Decimal(1).scaleb(exponent))


def step(
    state: WalkState, settings: SyntheticSource, rng: random.Random
) -> tuple[WalkState, float]:
    """The next trade's state and how many seconds after the last one it comes (pure, given
    the generator)."""
    bursting = state.bursting
    mean_stay = settings.burst_seconds if bursting else settings.calm_seconds
    rate = settings.rate * (settings.burst_factor if bursting else 1.0)
    wait = rng.expovariate(rate)
    if rng.random() < 1 - math.exp(-wait / mean_stay):
        bursting = not bursting
    move = rng.gauss(0.0, settings.volatility * math.sqrt(wait))
    price = significant(float(state.price) * math.exp(move))
    time_ms = state.time_ms + max(1, round(wait * 1000))
    return WalkState(state.trade_id + 1, price, time_ms, bursting), wait


def quantity(rng: random.Random) -> Decimal:
    size = Decimal(rng.lognormvariate(-3.0, 1.5)).quantize(MIN_QUANTITY)
    return max(size, MIN_QUANTITY)


def trades(
    symbol: str,
    settings: SyntheticSource,
    start: WalkState,
    clock: Callable[[], dt.datetime],
    sleep: Callable[[float], object],
) -> Iterator[TradeRecord]:
    """Trades after `start`, paced on the clock (each at its arrival time), until the caller
    stops iterating."""
    state = start
    rng = seeded(settings.seed, symbol, state.trade_id)
    due_ms = max(state.time_ms, ms_from_utc(clock()))
    state = WalkState(state.trade_id, state.price, due_ms, state.bursting)
    while True:
        state, _ = step(state, settings, rng)
        wait = (state.time_ms - ms_from_utc(clock())) / 1000
        if wait > 0:
            sleep(wait)
        when = utc_from_ms(state.time_ms)
        yield TradeRecord(
            exchange=EXCHANGE,
            symbol=symbol,
            trade_id=state.trade_id,
            price=state.price,
            quantity=quantity(rng),
            buyer_is_maker=rng.random() < 0.5,
            trade_time=when,
            event_time=when,
            ingest_time=clock(),
        )


def first_state(settings: SyntheticSource, now: dt.datetime) -> WalkState:
    return WalkState(0, significant(settings.start_price), ms_from_utc(now))
