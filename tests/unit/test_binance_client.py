"""The Binance client against a local server speaking Binance's formats over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest
from fakes.binance_server import FakeBinance

from cryptopipe_jobs.backoff import Backoff
from cryptopipe_jobs.producer.binance_rest import (
    BinanceRest,
    BinanceRestError,
    InvalidRestTrade,
    trade_record_from_rest,
)
from cryptopipe_jobs.producer.binance_ws import (
    BinanceConfig,
    NoEvents,
    connection_groups,
    stream_trades,
)
from cryptopipe_jobs.producer.sink import MemorySink

pytestmark = pytest.mark.unit

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@dataclass
class Recorder(NoEvents):
    reconnects: Counter[str] = field(default_factory=Counter)
    backfills: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)

    def reconnected(self, reason: str) -> None:
        self.reconnects[reason] += 1

    def backfilled(self, symbol: str, count: int) -> None:
        self.backfills[symbol] += count

    def duplicate_dropped(self, symbol: str) -> None:
        self.duplicates[symbol] += 1

    def dead_letter(self, category: str) -> None:
        self.dead[category] += 1

    def message_in(self, symbol: str) -> None:
        self.messages[symbol] += 1


@dataclass
class Run:
    fake: FakeBinance
    sink: MemorySink
    events: Recorder
    last_ids: dict[str, int]

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    async def connected(self, connections: int = 1) -> None:
        await self.until(lambda: len(self.fake.stream_paths) >= connections, "a connection")
        await self.until(lambda: self.fake.client_count() >= 1, "a live client")

    async def dropped(self, times: int) -> None:
        await self.until(lambda: self.events.reconnects["closed"] == times, "the drop")

    async def caught_up(self) -> None:
        def done() -> bool:
            return all(
                self.last_ids.get(s) == self.fake.last_id(s) for s in SYMBOLS if self.fake.ids(s)
            )

        await self.until(done, "every trade the server made")


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(SYMBOLS) as server:
        yield server


def fast_config(fake: FakeBinance, **overrides: Any) -> BinanceConfig:
    config = BinanceConfig(
        ws_url=fake.ws_url,
        rest_url=fake.rest_url,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        open_timeout_s=2.0,
        close_timeout_s=0.5,
        rest_timeout_s=2.0,
    )
    return replace(config, **overrides)


@asynccontextmanager
async def streaming(
    fake: FakeBinance,
    last_ids: dict[str, int] | None = None,
    rest: BinanceRest | None = None,
    **overrides: Any,
) -> AsyncIterator[Run]:
    run = Run(fake, MemorySink(), Recorder(), {} if last_ids is None else last_ids)
    stop = asyncio.Event()
    task = asyncio.create_task(
        stream_trades(
            fast_config(fake, **overrides),
            SYMBOLS,
            run.sink,
            run.last_ids,
            stop,
            run.events,
            rest=rest,
        )
    )
    try:
        yield run
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=2.0)


def assert_contiguous(sink: MemorySink, symbol: str, first: int, last: int) -> None:
    ids = sink.trade_ids(symbol)
    assert ids == list(range(first, last + 1)), f"{symbol}: {ids[:5]}...{ids[-5:]}"


def test_forced_disconnects_lose_and_repeat_nothing(fake: FakeBinance) -> None:
    async def scenario() -> Run:
        # A backoff of 0.1-0.2 s leaves time to make trades while the client is away.
        async with streaming(fake, backoff_base_s=0.2, backoff_max_s=0.4) as run:
            await run.connected()
            first = fake.emit(20)
            await run.caught_up()
            for round_ in (1, 2):
                fake.disconnect_all()
                await run.dropped(round_)
                fake.emit(15)  # only REST has these
                await run.connected(round_ + 1)
                fake.emit(10)
                await run.caught_up()
            for symbol in SYMBOLS:
                assert_contiguous(run.sink, symbol, first[symbol].start, fake.last_id(symbol))
        return run

    run = asyncio.run(scenario())
    assert run.events.backfills == Counter({symbol: 30 for symbol in SYMBOLS})
    assert run.events.duplicates == Counter()


def test_server_shutdown_reconnects_at_once(fake: FakeBinance) -> None:
    async def scenario() -> None:
        async with streaming(fake, backoff_base_s=5.0, backoff_max_s=5.0) as run:
            await run.connected()
            first = fake.emit(10)
            await run.caught_up()
            fake.shutdown_all()
            await run.until(lambda: run.events.reconnects["server_shutdown"] == 1, "shutdown")
            fake.emit(10)
            await run.caught_up()  # well before the 5 s backoff: no pause on a shutdown
        for symbol in SYMBOLS:
            assert_contiguous(run.sink, symbol, first[symbol].start, fake.last_id(symbol))
        assert len(fake.stream_paths) == 2
        assert fake.stream_paths[0] == "/stream?streams=btcusdt@trade/ethusdt@trade"

    asyncio.run(scenario())


def test_withheld_ids_are_closed_from_rest_in_pages(fake: FakeBinance) -> None:
    async def scenario() -> None:
        async with streaming(fake, rest_page_limit=100) as run:
            await run.connected()
            first = fake.emit(5)
            await run.caught_up()
            withheld = fake.withhold_next("BTCUSDT", 250)
            fake.emit(253)
            await run.caught_up()
        for symbol in SYMBOLS:
            assert_contiguous(run.sink, symbol, first[symbol].start, fake.last_id(symbol))
        assert run.events.backfills == Counter({"BTCUSDT": 250})
        pages = [(c.params["fromId"], c.params["limit"]) for c in fake.rest_calls]
        start = withheld.start
        assert pages == [(str(start), "100"), (str(start + 100), "100"), (str(start + 200), "50")]
        backfilled = [r for r in run.sink.trades if r["trade_id"] in withheld]
        assert all(r["event_time"] == r["trade_time"] for r in backfilled)

    asyncio.run(scenario())


def test_restart_from_last_ids_neither_repeats_nor_misses() -> None:
    with FakeBinance(SYMBOLS, history=100) as fake:
        btc = fake.ids("BTCUSDT")
        last_ids = {"BTCUSDT": btc[59]}  # ETHUSDT has no history in "Kafka": live only

        async def scenario() -> tuple[MemorySink, MemorySink, list[int]]:
            async with streaming(fake, last_ids=last_ids) as first_run:
                await first_run.connected()
                live_eth = fake.emit(5)["ETHUSDT"]
                await first_run.caught_up()
            fake.emit(30)  # while the producer is down
            async with streaming(fake, last_ids=dict(last_ids)) as second_run:
                await second_run.connected(2)
                fake.emit(5)
                await second_run.caught_up()
            return first_run.sink, second_run.sink, list(live_eth)

        first_sink, second_sink, live_eth = asyncio.run(scenario())
        combined = MemorySink(first_sink.trades + second_sink.trades)
        assert_contiguous(combined, "BTCUSDT", btc[60], fake.last_id("BTCUSDT"))
        assert_contiguous(combined, "ETHUSDT", live_eth[0], fake.last_id("ETHUSDT"))


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limits_wait_for_retry_after(fake: FakeBinance, status: int) -> None:
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    async def scenario() -> MemorySink:
        rest = BinanceRest(fake.rest_url, sleep=record_sleep)
        async with streaming(fake, rest=rest) as run:
            await run.connected()
            fake.emit(1)
            await run.caught_up()
            fake.withhold_next("ETHUSDT", 10)
            fake.rate_limit(2, retry_after_s=7, status=status)
            fake.emit(11, ["ETHUSDT"])
            await run.caught_up()
        return run.sink

    sink = asyncio.run(scenario())
    assert slept == [7.0, 7.0]
    assert [c.status for c in fake.rest_calls] == [status, status, 200]
    ids = sink.trade_ids("ETHUSDT")
    assert ids == list(range(ids[0], fake.last_id("ETHUSDT") + 1))


MALFORMED: list[tuple[str | bytes, str]] = [
    ("this is not json", "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    ("[1, 2, 3]", "not_object"),
    ('{"stream": "btcusdt@trade", "data": "trade"}', "bad_wrapper"),
    ('{"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": 1764446400000}}', "not_trade"),
]


def _frame(**overrides: Any) -> str:
    data = {"e": "trade", "E": 1_764_446_400_123, "s": "BTCUSDT", "t": 7, "p": "97000.1"}
    data |= {"q": "0.5", "T": 1_764_446_400_120, "m": False, "M": True}
    data |= overrides
    return json.dumps({"stream": f"{str(data['s']).lower()}@trade", "data": data})


MALFORMED += [
    (_frame(p="-5.0"), "not_positive"),
    (_frame(p="abc"), "not_decimal"),
    (_frame(t="12"), "wrong_type"),
    (_frame(s="DOGEUSDT"), "unknown_symbol"),
    (json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1}}), "missing_field"),
]


def test_malformed_frames_become_dead_letters_and_the_stream_goes_on(fake: FakeBinance) -> None:
    async def scenario() -> Run:
        async with streaming(fake) as run:
            await run.connected()
            first = fake.emit(3)
            await run.caught_up()
            for raw, _ in MALFORMED:
                fake.inject(raw)
            fake.emit(3)
            await run.caught_up()
            await run.until(lambda: len(run.sink.dead_letters) == len(MALFORMED), "dead letters")
            for symbol in SYMBOLS:
                assert_contiguous(run.sink, symbol, first[symbol].start, fake.last_id(symbol))
        return run

    run = asyncio.run(scenario())
    letters = run.sink.dead_letters
    assert [d.raw for d in letters] == [
        r if isinstance(r, bytes) else r.encode() for r, _ in MALFORMED
    ]
    assert all(d.reason for d in letters)
    assert run.events.dead == Counter(category for _, category in MALFORMED)
    negative = letters[5]
    assert "not positive" in negative.reason
    assert negative.stream == "btcusdt@trade"
    assert negative.event_time_ms == 1_764_446_400_123
    assert run.events.reconnects == Counter()


def test_stop_is_prompt_even_during_a_long_backoff(fake: FakeBinance) -> None:
    async def scenario() -> float:
        async with streaming(fake, backoff_base_s=30.0, backoff_max_s=30.0) as run:
            await run.connected()
            # The fake waits for the pong: off this loop, which must be free to answer.
            assert await asyncio.to_thread(fake.ping_all, b"ping-1764446400") == 1
            fake.disconnect_all()
            await run.dropped(1)
            began = time.monotonic()
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1.0


def test_connections_are_replaced_before_their_maximum_age(fake: FakeBinance) -> None:
    async def scenario() -> Run:
        async with streaming(fake, max_connection_age_s=0.3) as run:
            await run.connected()
            first = fake.emit(1)
            fake.start_ticking(200)
            await asyncio.sleep(1.1)
            fake.stop_ticking()
            fake.emit(1)
            await run.caught_up()
            for symbol in SYMBOLS:
                assert_contiguous(run.sink, symbol, first[symbol].start, fake.last_id(symbol))
        return run

    run = asyncio.run(scenario())
    assert run.events.reconnects["max_age"] >= 2
    assert set(run.events.reconnects) == {"max_age"}


def test_rest_errors_carry_binance_code_and_message(fake: FakeBinance) -> None:
    rest = BinanceRest(fake.rest_url)
    with pytest.raises(BinanceRestError) as caught:
        asyncio.run(rest.historical_trades("NOPEUSDT", from_id=1, limit=10))
    assert (caught.value.status, caught.value.code) == (400, -1121)
    assert "Invalid symbol." in str(caught.value)


def test_rest_rows_become_the_same_trade_records() -> None:
    row = {
        "id": 28457,
        "price": "4.00000100",
        "qty": "12.00000000",
        "quoteQty": "48.000012",
        "time": 1_499_865_549_590,
        "isBuyerMaker": True,
        "isBestMatch": True,
    }
    record = trade_record_from_rest("btcusdt", row, 1_499_865_550_000)
    assert record["symbol"] == "BTCUSDT"
    assert record["trade_id"] == 28457
    assert record["price"] == Decimal("4.00000100")
    assert record["event_time"] == record["trade_time"]
    assert int(record["ingest_time"].timestamp() * 1000) == 1_499_865_550_000
    with pytest.raises(InvalidRestTrade, match="not positive"):
        trade_record_from_rest("BTCUSDT", row | {"price": "0"}, 1)
    with pytest.raises(InvalidRestTrade, match="without qty"):
        trade_record_from_rest("BTCUSDT", {k: v for k, v in row.items() if k != "qty"}, 1)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    assert Backoff(1.0, 60.0, lambda: 0.0).delay(1) == 0.5
    assert Backoff(1.0, 60.0, lambda: 1.0).delay(4) == 8.0
    assert Backoff(1.0, 60.0, lambda: 1.0).delay(41) == 60.0


def test_symbols_split_across_connections_within_limits() -> None:
    symbols = [f"SYM{i}USDT" for i in range(1500)]
    groups = list(connection_groups(BinanceConfig(), symbols))
    assert [s for g in groups for s in g] == symbols
    assert all(len(g) <= 1024 for g in groups)
    assert list(connection_groups(BinanceConfig(max_path_length=10**6), symbols)) == [
        symbols[:1024],
        symbols[1024:],
    ]
    for group in groups:
        assert len(f"/stream?streams={'/'.join(s.lower() + '@trade' for s in group)}") <= 8000
