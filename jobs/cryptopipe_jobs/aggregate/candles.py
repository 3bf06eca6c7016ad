"""Candle column expressions: pure functions of columns, unit-tested on a local SparkSession.

The input is one row per (trade, interval) with the trade's columns plus `interval` and
`interval_ms`; grouping by (symbol, interval, window) and applying `aggregations()` followed by
`candle_columns()` yields rows of the Candle Avro schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from cryptopipe_schemas.avro_schemas import SchemaName, schema_json

# The order that decides open and close: event time, then trade id (never arrival order).
_ORDERED = "ordered"


def window_start(event_time: Column, interval_ms: Column) -> Column:
    """Start of the tumbling window (aligned to the epoch, as Spark's `window`) holding a time."""
    millis = F.unix_millis(event_time)
    return F.timestamp_millis(millis - F.pmod(millis, interval_ms))


def window_end(event_time: Column, interval_ms: Column) -> Column:
    return F.timestamp_millis(F.unix_millis(window_start(event_time, interval_ms)) + interval_ms)


def interval_rows(intervals: Sequence[tuple[str, int]]) -> Column:
    """An array of (interval, interval_ms) structs to explode: one row per trade and interval."""
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
        F.col("price").alias("price"),
    )


def aggregations() -> list[Column]:
    """Partial aggregates per window; decimals stay exact until `candle_columns`."""
    price, quantity = F.col("price"), F.col("quantity")
    taker_sold = F.col("buyer_is_maker")  # the buyer rested on the book: the taker sold
    return [
        F.min(_ordered_trade()).alias("first"),
        F.max(_ordered_trade()).alias("last"),
        F.max(price).alias("high"),
        F.min(price).alias("low"),
        F.sum(quantity).alias("base_volume"),
        F.sum(price * quantity).alias("quote_volume"),
        F.count(F.lit(1)).alias("trade_count"),
        F.sum(F.when(~taker_sold, quantity).otherwise(F.lit(0))).alias("taker_buy_volume"),
        F.sum(F.when(taker_sold, quantity).otherwise(F.lit(0))).alias("taker_sell_volume"),
        F.collect_list(_ordered_trade()).alias(_ORDERED),
    ]


def realized_volatility(trades: Column) -> Column:
    """sqrt(sum of squared log returns between consecutive trades); null under two trades.

    `trades` is an array of (event_time, trade_id, price) structs in any order; sorting the
    structs orders by event time, then trade id.
    """
    ordered = F.transform(F.array_sort(trades), lambda t: t["price"].cast("double"))
    count = F.size(ordered)
    returns = F.zip_with(
        F.slice(ordered, 2, count - 1), F.slice(ordered, 1, count - 1), lambda b, a: F.log(b / a)
    )
    total = F.aggregate(returns, F.lit(0.0), lambda acc, r: acc + r * r)
    return F.when(count >= 2, F.sqrt(total))


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
        F.col("first.price").cast("double").alias("open"),
        double("high").alias("high"),
        double("low").alias("low"),
        F.col("last.price").cast("double").alias("close"),
        double("base_volume").alias("base_volume"),
        double("quote_volume").alias("quote_volume"),
        vwap().alias("vwap"),
        F.col("trade_count"),
        double("taker_buy_volume").alias("taker_buy_volume"),
        double("taker_sell_volume").alias("taker_sell_volume"),
        realized_volatility(F.col(_ORDERED)).alias("realized_volatility"),
        F.lit(True).alias("is_final"),
        F.col("last.event_time").alias("event_time"),
        emitted_at.alias("ingest_time"),
    ]


# The Candle record's fields, in the schema's order (what the sinks write).
CANDLE_FIELDS = tuple(field["name"] for field in schema_json(SchemaName.CANDLE)["fields"])
