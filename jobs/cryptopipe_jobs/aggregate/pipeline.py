"""The streaming plan: decoded trades -> watermark -> dedupe -> one row per interval -> candles.

Late trades: the deduplication by (symbol, trade_id, event_time) is the first stateful
operator, and it drops trades whose event time is at or before the watermark, one row per trade,
so its `numRowsDroppedByWatermark` counts late trades exactly (the aggregation's own count is of
partially aggregated rows). A trade counts in every interval or in none.

Every interval is aggregated by one stateful operator: the window is a grouping key
(`window_end`) that carries the watermark metadata of `event_time`, which is what Spark's own
`window()` does for a single duration. A window is final, emitted once in append mode, when the
watermark reaches its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cryptopipe_jobs.aggregate import candles
from cryptopipe_jobs.aggregate.durations import spark_delay, to_millis

# Spark's key for a column's watermark delay (EventTimeWatermark.delayKey).
WATERMARK_DELAY_KEY = "spark.watermarkDelayMs"
INPUT_METRICS = "input"


@dataclass(frozen=True)
class AggregateSettings:
    intervals: Sequence[str]
    watermark: str

    def interval_pairs(self) -> list[tuple[str, int]]:
        return [(name, to_millis(name)) for name in self.intervals]


REQUIRED = ("symbol", "trade_id", "price", "quantity", "buyer_is_maker", "event_time")


def is_valid(trade: Column) -> Column:
    """A decoded Trade with every field the candles need (PERMISSIVE decoding of a damaged
    record can yield a struct of nulls)."""
    valid = trade.isNotNull()
    for name in REQUIRED:
        valid = valid & trade[name].isNotNull()
    return valid


def observed_input(trades: DataFrame) -> DataFrame:
    """Per-batch counts in the query's progress: records read and records that are no Trade."""
    return trades.observe(
        INPUT_METRICS,
        F.count(F.lit(1)).alias("records"),
        F.sum(F.when(is_valid(F.col("trade")), 0).otherwise(1)).alias("invalid"),
    )


def valid_trades(decoded: DataFrame) -> DataFrame:
    return decoded.where(is_valid(F.col("trade"))).select("trade.*")


def watermarked_window_end(event_time: Column, interval_ms: Column, delay_ms: int) -> Column:
    return candles.window_end(event_time, interval_ms).alias(
        "window_end", metadata={WATERMARK_DELAY_KEY: delay_ms}
    )


def candle_stream(trades: DataFrame, settings: AggregateSettings) -> DataFrame:
    """Finalized candles (append mode) of every interval from a stream of Trade columns."""
    delay_ms = to_millis(settings.watermark)
    exploded = (
        trades.withWatermark("event_time", spark_delay(settings.watermark))
        .dropDuplicates(["symbol", "trade_id", "event_time"])
        .withColumn("spec", F.explode(candles.interval_rows(settings.interval_pairs())))
        .select(
            "symbol",
            "trade_id",
            "price",
            "quantity",
            "buyer_is_maker",
            "event_time",
            F.col("spec.interval").alias("interval"),
            F.col("spec.interval_ms").alias("interval_ms"),
        )
        .withColumn(
            "window_end",
            watermarked_window_end(F.col("event_time"), F.col("interval_ms"), delay_ms),
        )
    )
    return (
        exploded.groupBy("symbol", "interval", "interval_ms", "window_end")
        .agg(*candles.aggregations())
        .select(*candles.candle_columns(F.col("interval_ms"), F.current_timestamp()))
    )
