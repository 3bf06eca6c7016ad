"""Candle column expressions: pure functions of columns, unit-tested on a local SparkSession.

Candles are built in two aggregations so that only the finest windows ever see single trades:

1. Trades are grouped into base windows (the greatest common divisor of the spec's intervals;
   epoch-aligned, so every window of every interval is a union of whole base windows):
   `sub_window_aggregations()` then `sub_window_columns()` give one summary per base window.
2. Summaries are grouped into the windows of every interval: `window_aggregations()` then
   `candle_columns()` give rows of the Candle Avro schema.

Every figure merges exactly: open and close are the first and last trade by (event time, trade
id) over the sub-windows, high and low their max and min, volumes and counts their sums, VWAP =
quote / base volume, and the realized variance is the sum of the sub-windows' in-window variances
plus the squared log returns across each boundary between consecutive non-empty sub-windows,
log(open_k+1 / close_k): exactly the sum over consecutive trades of the whole window.

Base, taker buy and taker sell volumes are exact decimal sums until the end. The quote volume
sums price * quantity in doubles (relative error about 1e-16 a trade): Spark keeps at most 38
digits, so a decimal(24,8) x decimal(24,8) product is rounded to 6 decimal places, which is off
by up to 5e-7 a trade, more than the double's error for any trade of a realistic size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

# Per base window: its trades in (event time, trade id, price) order, only while it is open.
_ORDERED = "ordered"
# Per window: its non-empty sub-windows' (first, last) trades, to add the boundary returns.
_SUBS = "subs"
_VARIANCE = "variance_within"


def window_start(event_time: Column, interval_ms: Column) -> Column:
    """Start of the tumbling window (aligned to the epoch, as Spark's `window`) holding a time."""
    millis = F.unix_millis(event_time)
    return F.timestamp_millis(millis - F.pmod(millis, interval_ms))


def window_end(event_time: Column, interval_ms: Column) -> Column:
    return F.timestamp_millis(F.unix_millis(window_start(event_time, interval_ms)) + interval_ms)


def base_interval_ms(intervals_ms: Sequence[int]) -> int:
    """The longest window length that every interval is a whole multiple of."""
    return reduce(math.gcd, intervals_ms)


def interval_rows(intervals: Sequence[tuple[str, int]]) -> Column:
    """An array of (interval, interval_ms) structs to explode: one row per input and interval."""
    return F.array(
        *(
            F.struct(F.lit(name).alias("interval"), F.lit(ms).cast("long").alias("interval_ms"))
            for name, ms in intervals
        )
    )


def _ordered_trade() -> Column:
    return F.struct(
        F.col("event_time").alias("event_time"),
        F.col("trade_id").alias("trade_id"),
        F.col("price").cast("double").alias("price"),
    )


def sub_window_aggregations() -> list[Column]:
    """Per base window, from trades (see the module's note on exactness). The first and last
    trades come from the window's sorted trades at its close (`sub_window_columns`): the same
    order as a min and max of the structs, without comparing two structs for every trade."""
    price, quantity = F.col("price"), F.col("quantity")
    taker_sold = F.col("buyer_is_maker")  # the buyer rested on the book: the taker sold
    return [
        F.max(price).alias("high"),
        F.min(price).alias("low"),
        F.sum(quantity).alias("base_volume"),
        F.sum(price.cast("double") * quantity.cast("double")).alias("quote_volume"),
        F.count(F.lit(1)).alias("trade_count"),
        F.sum(F.when(~taker_sold, quantity).otherwise(F.lit(0))).alias("taker_buy_volume"),
        F.sum(F.when(taker_sold, quantity).otherwise(F.lit(0))).alias("taker_sell_volume"),
        F.collect_list(_ordered_trade()).alias(_ORDERED),
    ]


def in_trade_order(trades: Column) -> Column:
    """An array of (event_time, trade_id, price) structs sorted by event time, then trade id.

    `sort_array`, not `array_sort`: the latter compares through an interpreted lambda, the
    former with the type's ordering.
    """
    return F.sort_array(trades)


def squared_log_returns(ordered_trades: Column) -> Column:
    """Sum of squared log returns between consecutive trades of a non-empty array in trade
    order (`in_trade_order`); 0 for one trade."""
    prices = F.transform(ordered_trades, lambda t: t["price"])
    count = F.size(prices)
    returns = F.zip_with(
        F.slice(prices, 2, count - 1), F.slice(prices, 1, count - 1), lambda b, a: F.log(b / a)
    )
    return F.aggregate(returns, F.lit(0.0), lambda acc, r: acc + r * r)


SUMMARY_FIELDS = (
    "first",
    "last",
    "high",
    "low",
    "base_volume",
    "quote_volume",
    "trade_count",
    "taker_buy_volume",
    "taker_sell_volume",
)


def sub_window_columns() -> list[Column]:
    """A base window's summary: everything but its trades, which are dropped here."""
    ordered = in_trade_order(F.col(_ORDERED))
    from_trades = {
        "first": F.element_at(ordered, 1).alias("first"),
        "last": F.element_at(ordered, -1).alias("last"),
    }
    return [
        F.col("symbol"),
        *(from_trades.get(name, F.col(name)) for name in SUMMARY_FIELDS),
        squared_log_returns(ordered).alias(_VARIANCE),
    ]


def window_aggregations() -> list[Column]:
    """Per window of an interval, from base-window summaries."""
    return [
        F.min("first").alias("first"),
        F.max("last").alias("last"),
        F.max("high").alias("high"),
        F.min("low").alias("low"),
        F.sum("base_volume").alias("base_volume"),
        F.sum("quote_volume").alias("quote_volume"),
        F.sum("trade_count").alias("trade_count"),
        F.sum("taker_buy_volume").alias("taker_buy_volume"),
        F.sum("taker_sell_volume").alias("taker_sell_volume"),
        F.sum(_VARIANCE).alias(_VARIANCE),
        F.collect_list(F.struct(F.col("first").alias("first"), F.col("last").alias("last"))).alias(
            _SUBS
        ),
    ]


def boundary_variance(subs: Column) -> Column:
    """Sum of squared log returns from each sub-window's close to the next one's open.

    Sub-windows do not overlap in time, so sorting by their first trade orders them.
    """
    ordered = F.sort_array(subs)
    count = F.size(ordered)
    returns = F.zip_with(
        F.slice(ordered, 2, count - 1),
        F.slice(ordered, 1, count - 1),
        lambda b, a: F.log(b["first"]["price"] / a["last"]["price"]),
    )
    return F.aggregate(returns, F.lit(0.0), lambda acc, r: acc + r * r)


def realized_volatility() -> Column:
    """sqrt(sum of squared log returns between consecutive trades); null under two trades."""
    total = F.col(_VARIANCE) + boundary_variance(F.col(_SUBS))
    return F.when(F.col("trade_count") >= 2, F.sqrt(total))


def vwap() -> Column:
    """quote / base volume; a window of zero-quantity trades has its last price instead."""
    base = F.col("base_volume")
    return (
        F.when(base > 0, F.col("quote_volume") / base).otherwise(F.col("last.price")).cast("double")
    )


def candle_columns(interval_ms: Column, emitted_at: Column) -> list[Column]:
    """The Candle record's columns from the aggregates (after grouping by symbol, interval and
    `window_end`)."""

    def double(name: str) -> Column:
        return F.col(name).cast("double")

    return [
        F.col("symbol"),
        F.col("interval"),
        F.timestamp_millis(F.unix_millis(F.col("window_end")) - interval_ms).alias("window_start"),
        F.col("window_end"),
        F.col("first.price").alias("open"),
        double("high").alias("high"),
        double("low").alias("low"),
        F.col("last.price").alias("close"),
        double("base_volume").alias("base_volume"),
        double("quote_volume").alias("quote_volume"),
        vwap().alias("vwap"),
        F.col("trade_count"),
        double("taker_buy_volume").alias("taker_buy_volume"),
        double("taker_sell_volume").alias("taker_sell_volume"),
        realized_volatility().alias("realized_volatility"),
        F.lit(True).alias("is_final"),
        F.col("last.event_time").alias("event_time"),
        emitted_at.alias("ingest_time"),
    ]
