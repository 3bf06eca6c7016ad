"""Replay of recorded data as Trade records: klines expanded into trades, and paced output.

Trades derived from klines are NOT real individual trades. Real history reachable here is
hourly candles, so each candle becomes a few synthetic prints built from its real values,
such that aggregating them back over the candle's window gives its open, high, low, close and
base volume exactly (and its taker buy and sell volume, when the candle records them):

- four price points: the open at the open time, then at +1/4 and +2/4 of the window the two
  extremes (low then high for a candle that closed at or above its open, high then low for
  one that closed below), then the close at the window's last millisecond;
- the base volume, in units of 1e-8, is split evenly over the four points (remainders go to
  the earliest points; taker-sell remainders to the latest), so the parts sum to it exactly;
- when the candle has taker buy volume, each point prints up to two trades: a taker buy
  (buyer_is_maker false) and a taker sell, carrying that point's share of the taker buy and
  of the remaining volume; without it each point prints one trade whose side follows the
  tick rule (an uptick is a taker buy, a downtick a taker sell, a repeat keeps the side);
- a candle with zero volume had no trades and yields none; a point whose share rounds to
  zero (a volume under 4e-8) prints a zero-quantity trade so the candle's prices survive;
- trade ids are open_time_ms * 10 + n (n < 8, the print's position in the candle): the same
  file always gives the same ids, increasing, so a restarted producer can resume by id.

`replay` then paces any such sequence (or real recorded trades) like a live feed.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from cryptopipe_jobs.producer.recorded import Kline, RecordedTrade
from cryptopipe_schemas.records import TradeRecord

UNIT = Decimal("0.00000001")
POINTS = 4
IDS_PER_KLINE = 10
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MILLISECOND = dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class ReplayTrade:
    """One trade to publish; time_ms is both its trade time and its event time."""

    exchange: str
    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    buyer_is_maker: bool
    time_ms: int


def utc_from_ms(ms: int) -> dt.datetime:
    # Exact integer arithmetic: float seconds can land a microsecond off the millisecond.
    return EPOCH + dt.timedelta(milliseconds=ms)


def ms_from_utc(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"{when.isoformat()} has no time zone; give an aware UTC time")
    return (when - EPOCH) // MILLISECOND


def split_units(units: int, parts: int, *, late: bool = False) -> list[int]:
    """`units` as `parts` near-equal integers summing to it; the remainder goes early (or late)."""
    base, extra = divmod(units, parts)
    shares = [base + (1 if index < extra else 0) for index in range(parts)]
    return shares[::-1] if late else shares


def _units(quantity: Decimal) -> int:
    return int(quantity.quantize(UNIT).scaleb(8))


def _quantity(units: int) -> Decimal:
    return (Decimal(units) * UNIT).quantize(UNIT)


def _price_points(kline: Kline) -> list[tuple[int, Decimal]]:
    width = kline.close_time_ms - kline.open_time_ms + 1
    first, second = (
        (kline.low, kline.high) if kline.close >= kline.open else (kline.high, kline.low)
    )
    return [
        (kline.open_time_ms, kline.open),
        (kline.open_time_ms + width // 4, first),
        (kline.open_time_ms + width // 2, second),
        (kline.close_time_ms, kline.close),
    ]


def _tick_sides(prices: Sequence[Decimal], bullish: bool) -> list[bool]:
    """buyer_is_maker per print: false (a taker buy) on an uptick, true on a downtick."""
    sides = [not bullish]
    for previous, price in itertools.pairwise(prices):
        sides.append(sides[-1] if price == previous else price < previous)
    return sides


def _prints(kline: Kline) -> list[tuple[int, Decimal, int, bool]]:
    """(time, price, units, buyer_is_maker) of each print of one kline, in order."""
    points = _price_points(kline)
    total = _units(kline.volume)
    if kline.taker_buy_base_volume is None:
        sides = _tick_sides([price for _, price in points], kline.close >= kline.open)
        shares = split_units(total, POINTS)
        return [
            (time, price, share, side)
            for (time, price), share, side in zip(points, shares, sides, strict=True)
        ]
    buys = split_units(_units(kline.taker_buy_base_volume), POINTS)
    # Sell remainders go late so that, whenever the volume allows, every point gets a print.
    sells = split_units(total - _units(kline.taker_buy_base_volume), POINTS, late=True)
    prints: list[tuple[int, Decimal, int, bool]] = []
    for (time, price), buy, sell in zip(points, buys, sells, strict=True):
        if buy:
            prints.append((time, price, buy, False))
        if sell or not buy:
            prints.append((time, price, sell, True))
    return prints


def klines_to_trades(klines: Iterable[Kline], symbol: str, exchange: str) -> list[ReplayTrade]:
    """Derived (not real) trades reproducing each kline exactly; see the module docstring."""
    trades: list[ReplayTrade] = []
    previous_open: int | None = None
    for kline in klines:
        if previous_open is not None and kline.open_time_ms <= previous_open:
            raise ValueError(f"kline at {kline.open_time_ms} is not after {previous_open}")
        previous_open = kline.open_time_ms
        if kline.volume == 0:
            continue
        for position, (time, price, units, maker) in enumerate(_prints(kline)):
            trades.append(
                ReplayTrade(
                    exchange=exchange,
                    symbol=symbol,
                    trade_id=kline.open_time_ms * IDS_PER_KLINE + position,
                    price=price,
                    quantity=_quantity(units),
                    buyer_is_maker=maker,
                    time_ms=time,
                )
            )
    return trades


def recorded_to_trades(
    trades: Iterable[RecordedTrade], symbol: str, exchange: str = "binance"
) -> list[ReplayTrade]:
    return [
        ReplayTrade(
            exchange=exchange,
            symbol=symbol,
            trade_id=trade.trade_id,
            price=trade.price,
            quantity=trade.quantity,
            buyer_is_maker=trade.buyer_is_maker,
            time_ms=trade.time_ms,
        )
        for trade in trades
    ]


def resume_after(trades: Sequence[ReplayTrade], trade_id: int | None) -> Sequence[ReplayTrade]:
    """The trades after `trade_id` (the last one published); trades must ascend by id."""
    if trade_id is None:
        return trades
    return trades[bisect.bisect_right(trades, trade_id, key=lambda trade: trade.trade_id) :]


def shift_ms(trades: Sequence[ReplayTrade], shift_to: dt.datetime | None) -> int:
    """The offset that moves the last trade's time to `shift_to` (0 when not shifting)."""
    if shift_to is None or not trades:
        return 0
    return ms_from_utc(shift_to) - trades[-1].time_ms


def to_record(trade: ReplayTrade, offset_ms: int, ingest_time: dt.datetime) -> TradeRecord:
    """The Trade record, the same type the live frame parser makes."""
    when = utc_from_ms(trade.time_ms + offset_ms)
    return TradeRecord(
        exchange=trade.exchange,
        symbol=trade.symbol,
        trade_id=trade.trade_id,
        price=trade.price,
        quantity=trade.quantity,
        buyer_is_maker=trade.buyer_is_maker,
        trade_time=when,
        event_time=when,
        ingest_time=ingest_time,
    )


def replay(
    trades: Sequence[ReplayTrade],
    speed: float,
    shift_to: dt.datetime | None,
    clock: Callable[[], dt.datetime],
    sleep: Callable[[float], None],
    *,
    after_id: int | None = None,
) -> Iterator[TradeRecord]:
    """Trade records paced like the recording: speed 1 is real time, N is N times faster,
    0 is no waiting. With `shift_to` every time moves by one offset so that the last trade of
    the whole recording lands there. `after_id` skips trades already published (resume).
    """
    if not speed >= 0:
        raise ValueError(f"speed {speed} must be 0 (no waiting) or positive")
    offset = shift_ms(trades, shift_to)
    start: tuple[int, dt.datetime] | None = None
    for trade in resume_after(trades, after_id):
        if speed > 0:
            # Waiting for a target on the clock, not for each gap, keeps publish time from
            # adding drift over a long replay.
            if start is None:
                start = (trade.time_ms, clock())
            due = start[1] + dt.timedelta(seconds=(trade.time_ms - start[0]) / 1000 / speed)
            wait = (due - clock()).total_seconds()
            if wait > 0:
                sleep(wait)
        yield to_record(trade, offset, clock())
