"""The synthetic trade source: a seeded, paced, bursty random walk, labelled synthetic."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from decimal import Decimal

import pytest

from cryptopipe_jobs.producer import synthetic
from cryptopipe_jobs.producer.replay import ms_from_utc
from cryptopipe_schemas.spec import SyntheticSource, parse_spec

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class FakeClock:
    """A clock that sleeping moves forward: the source paces itself on it without waiting."""

    def __init__(self) -> None:
        self.now = START
        self.slept = 0.0

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += dt.timedelta(seconds=seconds)


def walk(settings: SyntheticSource, count: int, symbol: str = "SYNAUSDT") -> list[dict]:  # type: ignore[type-arg]
    clock = FakeClock()
    start = synthetic.first_state(settings, clock())
    produced = synthetic.trades(symbol, settings, start, clock, clock.sleep)
    return [dict(t) for t in itertools.islice(produced, count)]


def test_the_spec_takes_a_synthetic_source_with_documented_defaults() -> None:
    spec = parse_spec({"symbol": "SYNAUSDT", "source": {"kind": "synthetic"}})
    assert spec.source.synthetic == SyntheticSource()
    assert (
        parse_spec(
            {"symbol": "SYNAUSDT", "source": {"kind": "synthetic", "synthetic": {"rate": 50}}}
        ).source.synthetic.rate
        == 50
    )


def test_records_say_synthetic_ids_ascend_and_times_follow_the_clock() -> None:
    trades = walk(SyntheticSource(rate=20), 500)
    assert {t["exchange"] for t in trades} == {"synthetic"}
    assert [t["trade_id"] for t in trades] == list(range(1, 501))
    times = [t["event_time"] for t in trades]
    assert times == sorted(times) and times[0] > START
    assert all(t["event_time"] == t["trade_time"] <= t["ingest_time"] for t in trades)


def test_the_walk_is_seeded_and_differs_by_seed_and_symbol() -> None:
    settings = SyntheticSource(seed=7)
    first = [(t["price"], t["quantity"]) for t in walk(settings, 50)]
    assert first == [(t["price"], t["quantity"]) for t in walk(settings, 50)]
    assert first != [(t["price"], t["quantity"]) for t in walk(SyntheticSource(seed=8), 50)]
    assert first != [(t["price"], t["quantity"]) for t in walk(settings, 50, "SYNBUSDT")]


def test_the_rate_holds_on_average_and_bursts_come_faster() -> None:
    settings = SyntheticSource(rate=10, burst_factor=5, burst_seconds=10, calm_seconds=60)
    trades = walk(settings, 20_000)
    span = (trades[-1]["event_time"] - trades[0]["event_time"]).total_seconds()
    # Calm 60 s at 10/s, bursts 10 s at 50/s: 1,100 trades per 70 s on average, 15.7/s.
    assert 12 < len(trades) / span < 20
    gaps = [
        (b["event_time"] - a["event_time"]).total_seconds() for a, b in itertools.pairwise(trades)
    ]
    per_second: dict[int, int] = {}
    for t in trades:
        second = int(t["event_time"].timestamp())
        per_second[second] = per_second.get(second, 0) + 1
    assert max(per_second.values()) > 30, "no burst reached several times the calm rate"
    assert statistics.median(gaps) < 0.1


def test_prices_keep_the_records_scale_and_sizes_are_positive_with_a_long_tail() -> None:
    trades = walk(SyntheticSource(start_price=0.000123, volatility=0.01), 2_000)
    assert all(-t["price"].as_tuple().exponent <= 8 for t in trades)
    assert all(t["price"] > 0 for t in trades)
    sizes = sorted(float(t["quantity"]) for t in trades)
    assert sizes[0] >= float(synthetic.MIN_QUANTITY)
    assert sizes[-1] > 20 * statistics.median(sizes)


def test_a_resumed_walk_continues_from_the_last_trade_and_price() -> None:
    settings = SyntheticSource()
    clock = FakeClock()
    resumed = synthetic.WalkState(41, Decimal("123.45"), ms_from_utc(START))
    first = next(synthetic.trades("SYNAUSDT", settings, resumed, clock, clock.sleep))
    assert first["trade_id"] == 42
    assert abs(float(first["price"]) / 123.45 - 1) < 0.01


@pytest.mark.parametrize("value", [100.0, 0.000123456789, 65_432.123456])
def test_significant_digits(value: float) -> None:
    rounded = synthetic.significant(value)
    assert abs(float(rounded) / value - 1) < 1e-7 or -rounded.as_tuple().exponent == 8  # type: ignore[operator]
