from __future__ import annotations

import datetime as dt
import itertools
import zipfile
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe_jobs.producer.main import replay_trades
from cryptopipe_jobs.producer.recorded import (
    EMBEDDED_EXCHANGE,
    EMBEDDED_FILE,
    EMBEDDED_SYMBOL,
    Kline,
    RecordedDataError,
    RecordedTrade,
    load_embedded,
    load_path,
)
from cryptopipe_jobs.producer.replay import (
    ReplayTrade,
    klines_to_trades,
    recorded_to_trades,
    replay,
    resume_after,
    split_units,
    utc_from_ms,
)
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import decode, encode
from cryptopipe_schemas.spec import CryptoPipelineSpec, spec_from_document

pytestmark = pytest.mark.unit

KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore\n"
)
KLINE_ROWS = (
    "1704067200000,42283.58000000,42554.57000000,42261.02000000,42475.23000000,1271.68108000,"
    "1704070799999,53957248.97378900,47134,682.57581000,28957416.81966880,0\n"
    "1704070800000,42475.23000000,42775.00000000,42431.65000000,42613.56000000,1196.37856000,"
    "1704074399999,50984325.62254000,50140,712.31476000,30356715.55604650,0\n"
)
TRADE_ROWS = (
    "3500000001,42283.58000000,0.00100000,42.28358000,1704067200000,true,true\n"
    "3500000002,42283.59000000,0.02000000,845.67180000,1704067200005,false,true\n"
    "3500000003,42283.00000000,0.50000000,21141.50000000,1704067200010,true,true\n"
)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- loaders ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["", KLINE_HEADER])
def test_kline_csv_with_and_without_header(tmp_path: Path, header: str) -> None:
    klines = load_path(_write(tmp_path, "BTCUSDT-1h-2024-01-01.csv", header + KLINE_ROWS))
    assert klines == [
        Kline(
            open_time_ms=1704067200000,
            close_time_ms=1704070799999,
            open=Decimal("42283.58"),
            high=Decimal("42554.57"),
            low=Decimal("42261.02"),
            close=Decimal("42475.23"),
            volume=Decimal("1271.68108"),
            quote_volume=Decimal("53957248.973789"),
            trade_count=47134,
            taker_buy_base_volume=Decimal("682.57581"),
        ),
        Kline(
            open_time_ms=1704070800000,
            close_time_ms=1704074399999,
            open=Decimal("42475.23"),
            high=Decimal("42775"),
            low=Decimal("42431.65"),
            close=Decimal("42613.56"),
            volume=Decimal("1196.37856"),
            quote_volume=Decimal("50984325.62254"),
            trade_count=50140,
            taker_buy_base_volume=Decimal("712.31476"),
        ),
    ]


def test_zip_holding_one_csv(tmp_path: Path) -> None:
    plain = load_path(_write(tmp_path, "k.csv", KLINE_ROWS))
    archive = tmp_path / "BTCUSDT-1h-2024-01.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("BTCUSDT-1h-2024-01.csv", KLINE_ROWS)
    assert load_path(archive) == plain


def test_microsecond_timestamps_are_read_as_milliseconds(tmp_path: Path) -> None:
    micro = KLINE_ROWS.replace("1704067200000,", "1704067200000000,").replace(
        "1704070799999,", "1704070799999999,"
    )
    micro = micro.replace("1704070800000,", "1704070800000000,").replace(
        "1704074399999,", "1704074399999999,"
    )
    assert micro != KLINE_ROWS
    assert load_path(_write(tmp_path, "us.csv", micro)) == load_path(
        _write(tmp_path, "ms.csv", KLINE_ROWS)
    )
    trades = load_path(
        _write(tmp_path, "t.csv", TRADE_ROWS.replace(",1704067200010,", ",1704067200010123,"))
    )
    assert [trade.time_ms for trade in trades if isinstance(trade, RecordedTrade)][
        -1
    ] == 1704067200010


def test_trade_csv(tmp_path: Path) -> None:
    header = "id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch\n"
    for text in (TRADE_ROWS, header + TRADE_ROWS):
        trades = load_path(_write(tmp_path, "BTCUSDT-trades-2024-01-01.csv", text))
        assert trades[0] == RecordedTrade(
            3500000001, Decimal("42283.58"), Decimal("0.001"), 1704067200000, True
        )
        assert [t.trade_id for t in trades if isinstance(t, RecordedTrade)] == [
            3500000001,
            3500000002,
            3500000003,
        ]
        assert [t.buyer_is_maker for t in trades if isinstance(t, RecordedTrade)] == [
            True,
            False,
            True,
        ]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (KLINE_ROWS + "1704074400000,oops,1,1,1,1,1704077999999,1,1,1,1,0\n", 3, "open 'oops'"),
        (KLINE_HEADER + KLINE_ROWS.replace("42554.57", "42000.00"), 2, "low <= open"),
        (KLINE_ROWS.replace(",47134,", ",47134,1,"), 1, "13 columns"),
        (TRADE_ROWS + "3500000004,1.0,0.1,0.1,1704067200011,maybe,true\n", 4, "'maybe'"),
        (TRADE_ROWS + "3500000003,1.0,0.1,0.1,1704067200011,true,true\n", 4, "not after"),
        (TRADE_ROWS + "3500000004,-1.0,0.1,0.1,1704067200011,true,true\n", 4, "positive"),
        (TRADE_ROWS + "3500000004,1.000000001,0.1,0.1,1704067200011,true,true\n", 4, "8 decimal"),
        (TRADE_ROWS + "3500000004,1.0,0.1\n", 4, "3 columns"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(RecordedDataError) as caught:
        load_path(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.csv", b"", "no data rows"),
        ("header-only.csv", KLINE_HEADER.encode(), "no data rows"),
        ("binary.csv", b"\xff\xfe\x00garbage", "not UTF-8"),
        ("broken.zip", b"not a zip at all", "cannot read"),
        ("five.csv", b"1,2,3,4,5\n", "5 columns"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordedDataError, match=reason) as caught:
        load_path(path)
    assert str(path) in str(caught.value)


def test_zip_with_two_csvs_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a.csv", KLINE_ROWS)
        out.writestr("b.csv", KLINE_ROWS)
    with pytest.raises(RecordedDataError, match=r"2 \.csv files"):
        load_path(archive)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordedDataError, match="cannot read"):
        load_path(tmp_path / "absent.csv")


# --- embedded data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> list[Kline]:
    return load_embedded()


def test_embedded_data_is_a_package_resource() -> None:
    resource = resources.files("cryptopipe_jobs") / "data" / EMBEDDED_FILE
    assert resource.is_file()
    assert len(resource.read_bytes()) < 2_000_000


def test_embedded_data_is_sane(embedded: list[Kline]) -> None:
    assert len(embedded) > 20_000
    opens = [k.open_time_ms for k in embedded]
    assert opens == sorted(set(opens))
    assert all(b - a == 3_600_000 for a, b in itertools.pairwise(opens))
    assert utc_from_ms(opens[0]) == dt.datetime(2017, 7, 1, 11, tzinfo=dt.UTC)
    assert utc_from_ms(opens[-1]) == dt.datetime(2019, 10, 17, 9, tzinfo=dt.UTC)
    assert all(k.low > 0 and k.low <= min(k.open, k.close) for k in embedded)
    assert all(max(k.open, k.close) <= k.high for k in embedded)
    assert all(k.volume >= 0 for k in embedded)
    # Real BTC/USD of the period: between roughly 1.7k and 20k dollars.
    assert Decimal(1500) < min(k.low for k in embedded) < max(k.high for k in embedded) < 20_000


def test_embedded_data_replays_and_encodes(embedded: list[Kline]) -> None:
    trades = klines_to_trades(embedded[:50], EMBEDDED_SYMBOL, EMBEDDED_EXCHANGE)
    records = list(replay(trades, 0, None, lambda: T0, _no_sleep))
    assert {r["exchange"] for r in records} == {"coinbase"}
    for record in records:
        assert decode(encode(SchemaName.TRADE, record)).record["trade_id"] == record["trade_id"]


# --- klines -> trades ------------------------------------------------------------------

UNITS = st.integers(min_value=1, max_value=10**13)  # prices in 1e-8 up to 100k


@st.composite
def klines(draw: st.DrawFn) -> list[Kline]:
    count = draw(st.integers(min_value=1, max_value=4))
    width = draw(st.sampled_from([1, 3, 1_000, 60_000, 3_600_000]))
    first = draw(st.integers(min_value=1_500_000_000_000, max_value=1_800_000_000_000))
    result = []
    for index in range(count):
        prices = sorted(draw(st.lists(UNITS, min_size=4, max_size=4)))
        low, high = prices[0], prices[3]
        open_, close = draw(st.permutations(prices[1:3]))
        volume = draw(st.one_of(st.integers(0, 10), st.integers(0, 10**15)))
        taker = draw(st.one_of(st.none(), st.integers(0, volume)))
        open_time = first + index * width
        result.append(
            Kline(
                open_time_ms=open_time,
                close_time_ms=open_time + width - 1,
                open=Decimal(open_) / 10**8,
                high=Decimal(high) / 10**8,
                low=Decimal(low) / 10**8,
                close=Decimal(close) / 10**8,
                volume=Decimal(volume) / 10**8,
                taker_buy_base_volume=None if taker is None else Decimal(taker) / 10**8,
            )
        )
    return result


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s at speed 0")


@settings(max_examples=200, deadline=None)
@given(klines())
def test_kline_trades_aggregate_back_to_the_kline(candles: list[Kline]) -> None:
    trades = klines_to_trades(candles, "BTCUSDT", "binance")
    ids = [t.trade_id for t in trades]
    assert ids == sorted(set(ids))
    assert [t.time_ms for t in trades] == sorted(t.time_ms for t in trades)
    for kline in candles:
        inside = [t for t in trades if kline.open_time_ms <= t.time_ms <= kline.close_time_ms]
        if kline.volume == 0:
            assert inside == []
            continue
        assert inside[0].price == kline.open
        assert inside[-1].price == kline.close
        assert max(t.price for t in inside) == kline.high
        assert min(t.price for t in inside) == kline.low
        assert sum(t.quantity for t in inside) == kline.volume
        assert all(t.quantity == t.quantity.quantize(Decimal("1e-8")) for t in inside)
        assert all(t.quantity > 0 for t in inside) or kline.volume < Decimal("4e-8")
        if kline.taker_buy_base_volume is not None:
            buys = sum(t.quantity for t in inside if not t.buyer_is_maker)
            assert buys == kline.taker_buy_base_volume
        assert inside[0].time_ms == kline.open_time_ms
        assert inside[-1].time_ms == kline.close_time_ms
    records = list(replay(trades, 0, None, lambda: T0, _no_sleep))
    for record in records:
        decoded = decode(encode(SchemaName.TRADE, record)).record
        assert decoded["price"] == record["price"]
        assert decoded["quantity"] == record["quantity"]
        assert decoded["trade_time"] == record["trade_time"]


def _hour(hour: int, open_: str, high: str, low: str, close: str, volume: str) -> Kline:
    start = hour * 3_600_000
    prices = (Decimal(open_), Decimal(high), Decimal(low), Decimal(close), Decimal(volume))
    return Kline(start, start + 3_599_999, *prices)


def test_kline_trades_are_deterministic_and_ordered_by_direction() -> None:
    up = _hour(1, "10", "12", "9", "11", "4")
    down = _hour(2, "11", "12", "9", "10", "4")
    trades = klines_to_trades([up, down], "BTCUSDT", "binance")
    assert trades == klines_to_trades([up, down], "BTCUSDT", "binance")
    assert [(t.trade_id, t.price, t.time_ms, t.buyer_is_maker) for t in trades] == [
        (36_000_000, Decimal(10), 3_600_000, False),
        (36_000_001, Decimal(9), 4_500_000, True),
        (36_000_002, Decimal(12), 5_400_000, False),
        (36_000_003, Decimal(11), 7_199_999, True),
        (72_000_000, Decimal(11), 7_200_000, True),
        (72_000_001, Decimal(12), 8_100_000, False),
        (72_000_002, Decimal(9), 9_000_000, True),
        (72_000_003, Decimal(10), 10_799_999, False),
    ]
    assert {t.quantity for t in trades} == {Decimal(1)}


def test_klines_out_of_order_are_refused() -> None:
    kline = _hour(1, "10", "12", "9", "11", "4")
    with pytest.raises(ValueError, match="not after"):
        klines_to_trades([kline, kline], "BTCUSDT", "binance")


@given(st.integers(0, 10**12), st.integers(1, 8), st.booleans())
def test_split_units_sums_exactly(units: int, parts: int, late: bool) -> None:
    shares = split_units(units, parts, late=late)
    assert sum(shares) == units
    assert max(shares) - min(shares) <= 1


# --- pacing, shifting, resuming --------------------------------------------------------


class FakeTime:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


def _trades(times: list[int], first_id: int = 100) -> list[ReplayTrade]:
    recorded = [
        RecordedTrade(first_id + n, Decimal("42000.5"), Decimal("0.01"), time, n % 2 == 0)
        for n, time in enumerate(times)
    ]
    return recorded_to_trades(recorded, "BTCUSDT")


TIMES = [1_704_067_200_000, 1_704_067_200_000, 1_704_067_201_500, 1_704_067_260_000]


@pytest.mark.parametrize("speed", [1.0, 10.0, 60.0])
def test_sleeps_sum_to_span_over_speed(speed: float) -> None:
    fake = FakeTime(T0)
    records = list(replay(_trades(TIMES), speed, None, fake.clock, fake.sleep))
    span = (TIMES[-1] - TIMES[0]) / 1000
    assert sum(fake.sleeps) == pytest.approx(span / speed)
    assert len(fake.sleeps) == 2  # no sleep for the first trade or one at the same millisecond
    assert [r["trade_time"] for r in records] == [utc_from_ms(t) for t in TIMES]
    assert [r["event_time"] for r in records] == [r["trade_time"] for r in records]
    assert records[-1]["ingest_time"] == T0 + dt.timedelta(seconds=span / speed)


def test_speed_zero_never_sleeps_and_stamps_ingest_time() -> None:
    records = list(replay(_trades(TIMES), 0, None, lambda: T0, _no_sleep))
    assert [r["ingest_time"] for r in records] == [T0] * len(TIMES)
    assert records[0] == {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": 100,
        "price": Decimal("42000.5"),
        "quantity": Decimal("0.01"),
        "buyer_is_maker": True,
        "trade_time": utc_from_ms(TIMES[0]),
        "event_time": utc_from_ms(TIMES[0]),
        "ingest_time": T0,
    }
    for record in records:
        encode(SchemaName.TRADE, record)


def test_pacing_absorbs_time_spent_publishing() -> None:
    fake = FakeTime(T0)
    total = 0.0
    for _ in replay(_trades(TIMES), 1.0, None, fake.clock, fake.sleep):
        fake.now += dt.timedelta(seconds=0.25)  # the consumer of each record is slow
        total += 0.25
    assert sum(fake.sleeps) + total - 0.25 == pytest.approx((TIMES[-1] - TIMES[0]) / 1000)


def test_shift_puts_the_last_event_at_shift_to() -> None:
    target = dt.datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)
    records = list(replay(_trades(TIMES), 0, target, lambda: T0, _no_sleep))
    assert records[-1]["event_time"] == target
    assert records[-1]["trade_time"] == target
    gaps = [b["event_time"] - a["event_time"] for a, b in itertools.pairwise(records)]
    assert gaps == [utc_from_ms(b) - utc_from_ms(a) for a, b in itertools.pairwise(TIMES)]


def test_shift_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="time zone"):
        list(replay(_trades(TIMES), 0, dt.datetime(2026, 1, 1), lambda: T0, _no_sleep))


def test_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        list(replay(_trades(TIMES), -1, None, lambda: T0, _no_sleep))


@given(st.integers(min_value=90, max_value=110))
def test_resume_skips_exactly_the_ids_up_to_the_given_one(last_published: int) -> None:
    trades = _trades(TIMES * 3)
    rest = resume_after(trades, last_published)
    assert [t.trade_id for t in rest] == [t.trade_id for t in trades if t.trade_id > last_published]
    records = replay(trades, 0, None, lambda: T0, _no_sleep, after_id=last_published)
    assert [r["trade_id"] for r in records] == [t.trade_id for t in rest]


def test_resumed_replay_keeps_the_shift_of_the_whole_recording() -> None:
    trades = _trades(TIMES)
    target = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    whole = list(replay(trades, 0, target, lambda: T0, _no_sleep))
    resumed = list(replay(trades, 0, target, lambda: T0, _no_sleep, after_id=101))
    assert resumed == whole[2:]


def test_resume_of_derived_trades_across_a_restart() -> None:
    klines = [_hour(h, "10", "12", "9", "11", "4") for h in range(1, 4)]
    trades = klines_to_trades(klines, "BTCUSDT", "binance")
    first = list(replay(trades, 0, None, lambda: T0, _no_sleep))[:5]
    rest = list(replay(trades, 0, None, lambda: T0, _no_sleep, after_id=first[-1]["trade_id"]))
    assert [r["trade_id"] for r in first + rest] == [t.trade_id for t in trades]


def test_a_replay_tail_keeps_only_the_newest_klines_of_the_recording() -> None:
    def spec(tail: int) -> CryptoPipelineSpec:
        source = {"kind": "replay", "replay": {"data": "embedded", "tail": tail}}
        return spec_from_document({"symbol": "BTCUSDT", "source": source})

    klines = load_embedded()
    trades = replay_trades(spec(48), None)
    assert trades == klines_to_trades(klines[-48:], "BTCUSDT", "coinbase")
    assert min(t.time_ms for t in trades) >= klines[-48].open_time_ms
    assert len(replay_trades(spec(0), None)) == len(klines_to_trades(klines, "BTCUSDT", "coinbase"))
