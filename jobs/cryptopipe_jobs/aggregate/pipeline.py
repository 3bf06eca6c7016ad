"""The streaming plan: decoded trades -> watermark -> dedupe -> base windows -> candles.

Late trades: the deduplication by (symbol, trade_id, event_time) is the first stateful
operator, and it drops trades whose event time is at or before the watermark, one row per trade,
so its `numRowsDroppedByWatermark` counts late trades exactly (the aggregation's own count is of
partially aggregated rows). A trade counts in every interval or in none.

Two stateful aggregations follow (see candles): trades into base windows (the greatest common
divisor of the intervals), then base-window summaries into the windows of every interval. In
both the window is a grouping key (`window_end`) that carries the watermark metadata of
`event_time`, which is what Spark's own `window()` does for a single duration. A window is
final, emitted once in append mode, when the watermark reaches its end. Only base windows keep
trades in state (to order them for the realized volatility), and only until they close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cryptopipe_jobs.aggregate import candles
from cryptopipe_schemas.durations import parse_duration, parse_interval

# Spark's key for a column's watermark delay (EventTimeWatermark.delayKey).
WATERMARK_DELAY_KEY = "spark.watermarkDelayMs"
INPUT_METRICS = "input"


@dataclass(frozen=True)
class AggregateSettings:
    intervals: Sequence[str]
    watermark: str

    def interval_pairs(self) -> list[tuple[str, int]]:
        return [(name, parse_interval(name)) for name in self.intervals]


def spark_delay(watermark: str) -> str:
    """The watermark delay in the form `withWatermark` reads."""
    return f"{parse_duration(watermark)} milliseconds"


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


def sub_window_stream(trades: DataFrame, settings: AggregateSettings) -> DataFrame:
    """One summary per symbol and base window (see candles), final once the watermark passes
    the window's end; `sub_start` is the window's start."""
    delay_ms = parse_duration(settings.watermark)
    base_ms = candles.base_interval_ms([ms for _, ms in settings.interval_pairs()])
    return (
        trades.withWatermark("event_time", spark_delay(settings.watermark))
        .dropDuplicates(["symbol", "trade_id", "event_time"])
        # A grouping key of its own column: an aliased expression in groupBy loses the metadata.
        .withColumn(
            "window_end", watermarked_window_end(F.col("event_time"), F.lit(base_ms), delay_ms)
        )
        .groupBy("symbol", "window_end")
        .agg(*candles.sub_window_aggregations())
        # A plain column, not the event-time one: the next aggregation keys on its own windows.
        .select(
            F.timestamp_millis(F.unix_millis(F.col("window_end")) - base_ms).alias("sub_start"),
            *candles.sub_window_columns(),
        )
    )


def candle_stream(trades: DataFrame, settings: AggregateSettings) -> DataFrame:
    """Finalized candles (append mode) of every interval from a stream of Trade columns.

    A base window is emitted by the first aggregation in the batch whose watermark passes its
    end, and the second aggregation takes it in and closes the windows that end there in the
    same batch: a candle leaves as soon as it would with a single aggregation.
    """
    delay_ms = parse_duration(settings.watermark)
    summaries = sub_window_stream(trades, settings)
    return (
        summaries.withColumn("spec", F.explode(candles.interval_rows(settings.interval_pairs())))
        # select, not withColumn: withColumn re-aliases and drops the watermark metadata.
        .select(
            *(F.col(name) for name in summaries.columns if name != "sub_start"),
            F.col("spec.interval").alias("interval"),
            F.col("spec.interval_ms").alias("interval_ms"),
            watermarked_window_end(F.col("sub_start"), F.col("spec.interval_ms"), delay_ms),
        )
        .groupBy("symbol", "interval", "interval_ms", "window_end")
        .agg(*candles.window_aggregations())
        .select(*candles.candle_columns(F.col("interval_ms"), F.current_timestamp()))
    )
