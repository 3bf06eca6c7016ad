"""Candle expressions on a local SparkSession (no test bed): the pure column functions."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aggregate_support import mismatches, random_stream, reference
from pyspark.sql import DataFrame, SparkSession

from cryptopipe_jobs.aggregate import candles, pipeline
from cryptopipe_jobs.spark_session import SparkSettings, create_session
from cryptopipe_schemas.avro_schemas import CANDLE_FIELDS

pytestmark = pytest.mark.unit

SCHEMA = (
    "symbol STRING, trade_id LONG, price DECIMAL(24,8), quantity DECIMAL(24,8), "
    "buyer_is_maker BOOLEAN, event_time TIMESTAMP"
)
T0 = dt.datetime(2025, 11, 29, 20, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def local_spark() -> Iterator[SparkSession]:
    active = SparkSession.getActiveSession()
    if active is not None:  # the integration tests' session: reuse it, leave it running
        yield active
        return
    session = create_session(SparkSettings("unit-candles", master="local[1]"))
    yield session
    session.stop()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def trade(
    trade_id: int, seconds: float, price: str, quantity: str = "1", maker: bool = False
) -> tuple[object, ...]:
    return ("BTCUSDT", trade_id, Decimal(price), Decimal(quantity), maker, at(seconds))


def aggregate(
    spark: SparkSession, rows: list[tuple[object, ...]], *intervals: str
) -> list[dict[str, Any]]:
    """The job's plan (base windows, then every interval) on a batch of trades."""
    frame: DataFrame = spark.createDataFrame(rows, SCHEMA)
    result = pipeline.candle_stream(frame, pipeline.AggregateSettings(list(intervals), "1s"))
    assert tuple(result.columns) == CANDLE_FIELDS
    return [row.asDict() for row in result.orderBy("interval", "window_start").collect()]


def test_open_and_close_follow_event_time_then_trade_id_not_input_order(
    local_spark: SparkSession,
) -> None:
    rows = [
        trade(5, 30, "103"),
        trade(4, 10, "102"),  # same event time as 3: the lower id opens
        trade(3, 10, "101"),
        trade(9, 50, "105"),  # same event time as 8: the higher id closes
        trade(8, 50, "104"),
    ]
    (candle,) = aggregate(local_spark, rows, "1m")
    assert (candle["open"], candle["close"]) == (101.0, 105.0)
    assert (candle["high"], candle["low"]) == (105.0, 101.0)
    assert candle["event_time"].replace(tzinfo=dt.UTC) == at(50)


def test_volumes_vwap_and_taker_sides(local_spark: SparkSession) -> None:
    rows = [
        trade(1, 1, "100", "2", maker=False),  # taker bought 2
        trade(2, 2, "110", "1", maker=True),  # buyer was the maker: taker sold 1
        trade(3, 3, "90", "0.5", maker=True),
    ]
    (candle,) = aggregate(local_spark, rows, "1m")
    assert candle["base_volume"] == 3.5
    assert candle["quote_volume"] == 200 + 110 + 45
    assert candle["vwap"] == pytest.approx(355 / 3.5)
    assert candle["trade_count"] == 3
    assert (candle["taker_buy_volume"], candle["taker_sell_volume"]) == (2.0, 1.5)
    assert candle["is_final"] is True


def test_realized_volatility_of_consecutive_log_returns(local_spark: SparkSession) -> None:
    rows = [trade(3, 20, "121"), trade(1, 0, "100"), trade(2, 10, "110")]
    (candle,) = aggregate(local_spark, rows, "1m")
    expected = math.sqrt(math.log(110 / 100) ** 2 + math.log(121 / 110) ** 2)
    assert candle["realized_volatility"] == pytest.approx(expected, rel=1e-12)


def test_volatility_of_a_coarser_window_spans_its_sub_windows(local_spark: SparkSession) -> None:
    # Two 1m sub-windows of the 2m window; the return from 100 (at 59 s) to 110 (at 60 s)
    # crosses their boundary, and the 2m window has no 1m window to itself at all.
    rows = [trade(1, 0, "90"), trade(2, 59, "100"), trade(3, 60, "110"), trade(4, 119, "121")]
    one_minute, two_minutes = (
        [c for c in aggregate(local_spark, rows, "1m", "2m") if c["interval"] == name]
        for name in ("1m", "2m")
    )
    assert [c["realized_volatility"] for c in one_minute] == pytest.approx(
        [math.log(100 / 90), math.log(121 / 110)], rel=1e-12
    )
    (candle,) = two_minutes
    expected = math.sqrt(sum(math.log(b / a) ** 2 for a, b in [(90, 100), (100, 110), (110, 121)]))
    assert candle["realized_volatility"] == pytest.approx(expected, rel=1e-12)
    assert (candle["open"], candle["close"], candle["trade_count"]) == (90.0, 121.0, 4)


def test_base_window_is_the_common_divisor_of_the_intervals() -> None:
    assert candles.base_interval_ms([60_000, 300_000, 3_600_000]) == 60_000
    assert candles.base_interval_ms([120_000, 180_000]) == 60_000
    assert candles.base_interval_ms([1_000]) == 1_000


@pytest.mark.parametrize("intervals", [["30s", "1m", "5m"], ["7s", "2m", "3m"]])
def test_every_interval_equals_an_independent_pandas_computation(
    local_spark: SparkSession, intervals: list[str]
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    stream = random_stream(rng, ["BTCUSDT", "ETHUSDT"], phases=1, watermark_ms=0, span_ms=900_000)
    (phase,) = stream.phases
    expected = reference(stream, intervals, "1ms")
    rows: list[tuple[object, ...]] = [
        (
            t["symbol"],
            t["trade_id"],
            t["price"],
            t["quantity"],
            t["buyer_is_maker"],
            t["event_time"],
        )
        for t in phase
    ]
    final = [
        c
        for c in aggregate(local_spark, rows, *intervals)
        if c["window_end"].replace(tzinfo=dt.UTC).timestamp() * 1000 <= expected.final_watermark_ms
    ]
    assert len(expected.candles) > 10
    problems = mismatches(final, expected.candles)
    assert problems == [], f"seed {seed}: {problems}"


def test_one_trade_has_no_volatility(local_spark: SparkSession) -> None:
    (candle,) = aggregate(local_spark, [trade(1, 0, "100")], "1m")
    assert candle["realized_volatility"] is None


def test_windows_are_aligned_to_the_epoch_with_exclusive_ends(local_spark: SparkSession) -> None:
    rows = [trade(1, 59.999, "1"), trade(2, 60, "2"), trade(3, 299.5, "3"), trade(4, 300, "4")]
    one_minute = aggregate(local_spark, rows, "1m")
    assert [(c["window_start"].minute, c["trade_count"]) for c in one_minute] == [
        (0, 1),
        (1, 1),
        (4, 1),
        (5, 1),
    ]
    five_minutes = aggregate(local_spark, rows, "5m")
    assert [(c["window_start"].minute, c["window_end"].minute) for c in five_minutes] == [
        (0, 5),
        (5, 10),
    ]
    assert [c["trade_count"] for c in five_minutes] == [3, 1]


def test_watermark_delay() -> None:
    assert pipeline.spark_delay("30s") == "30000 milliseconds"
    with pytest.raises(ValueError, match="not a duration"):
        pipeline.spark_delay("0s")


def test_candles_reach_kafka_in_window_order_per_key(local_spark: SparkSession) -> None:
    from cryptopipe_jobs.sinks.kafka_candles import in_time_order

    rows = [("BTCUSDT", "1h", at(3600 * i)) for i in (5, 1, 4, 0, 3, 2)]
    rows += [("ETHUSDT", "1h", at(3600 * i)) for i in (2, 0, 1)]
    frame = local_spark.createDataFrame(
        rows, "symbol STRING, interval STRING, window_start TIMESTAMP"
    )
    ordered = in_time_order(frame.repartition(3))
    per_task = ordered.rdd.glom().collect()
    for task in per_task:
        for key in {(row.symbol, row.interval) for row in task}:
            starts = [row.window_start for row in task if (row.symbol, row.interval) == key]
            assert starts == sorted(starts)
    assert sum(1 for task in per_task for row in task if row.symbol == "BTCUSDT") == 6
    assert len([task for task in per_task if any(row.symbol == "BTCUSDT" for row in task)]) == 1
