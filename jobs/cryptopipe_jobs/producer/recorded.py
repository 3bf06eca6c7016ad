"""Recorded market data for the replay source: the embedded real hourly BTC/USD candles, and
Binance public data files as a user downloads them (kline and trade CSVs, plain or zipped).

Pure: files in, dataclasses out; no Kafka. Anything that cannot be read raises
RecordedDataError naming the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

SCALE = Decimal("0.00000001")
MAX_DECIMAL = Decimal("1e16")
# A time of 10**14 ms is the year 5138 but only 1973 in µs: Binance spot files from 2025 on
# are in µs (about 1.7e15), earlier ones in ms (about 1.7e12).
MICROSECONDS_FROM = 10**14

EMBEDDED_FILE = "coinbase-btcusd-1h.csv.gz"
EMBEDDED_EXCHANGE = "coinbase"
EMBEDDED_SYMBOL = "BTCUSD"
EMBEDDED_INTERVAL_MS = 3_600_000
EMBEDDED_COLUMNS = (
    "open_time_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "taker_buy_base_volume",
)

KLINE_COLUMNS = 12
TRADE_COLUMNS = (6, 7)  # futures files lack isBestMatch
AGG_TRADE_COLUMNS = 8


class RecordedDataError(ValueError):
    """A recorded data file that cannot be read; says which file and line."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Kline:
    """One candle; close_time_ms is the window's last millisecond, as Binance writes it."""

    open_time_ms: int
    close_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None = None
    trade_count: int | None = None
    taker_buy_base_volume: Decimal | None = None


@dataclass(frozen=True)
class RecordedTrade:
    trade_id: int
    price: Decimal
    quantity: Decimal
    time_ms: int
    buyer_is_maker: bool


class _Fields:
    """Typed access to one CSV row, raising errors that name the file, line and column."""

    def __init__(self, source: str, line: int, values: Sequence[str]) -> None:
        self.source, self.line, self.values = source, line, values

    def fail(self, reason: str) -> RecordedDataError:
        return RecordedDataError(self.source, self.line, reason)

    def integer(self, index: int, name: str) -> int:
        text = self.values[index].strip()
        try:
            return int(text)
        except ValueError:
            raise self.fail(f"{name} {text!r} is not an integer") from None

    def time_ms(self, index: int, name: str) -> int:
        value = self.integer(index, name)
        if value <= 0:
            raise self.fail(f"{name} {value} is not a time")
        return value // 1000 if value >= MICROSECONDS_FROM else value

    def decimal(self, index: int, name: str, *, positive: bool = False) -> Decimal:
        text = self.values[index].strip()
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise self.fail(f"{name} {text!r} is not a decimal number") from None
        if not value.is_finite() or value < 0 or (positive and value == 0):
            wanted = "positive" if positive else "non-negative"
            raise self.fail(f"{name} {text!r} is not a {wanted} number")
        if value >= MAX_DECIMAL:
            raise self.fail(f"{name} {text} is too large")
        if value != value.quantize(SCALE):
            raise self.fail(f"{name} {text} has more than 8 decimal places")
        return value.quantize(SCALE)

    def optional_decimal(self, index: int, name: str) -> Decimal | None:
        return self.decimal(index, name) if self.values[index].strip() else None

    def optional_integer(self, index: int, name: str) -> int | None:
        return self.integer(index, name) if self.values[index].strip() else None

    def boolean(self, index: int, name: str) -> bool:
        text = self.values[index].strip().lower()
        if text not in ("true", "false"):
            raise self.fail(f"{name} {self.values[index]!r} is not true or false")
        return text == "true"


def _check_candle(fields: _Fields, kline: Kline) -> Kline:
    if not kline.low <= min(kline.open, kline.close) <= max(kline.open, kline.close) <= kline.high:
        raise fields.fail(
            f"prices are not low <= open, close <= high "
            f"(open {kline.open}, high {kline.high}, low {kline.low}, close {kline.close})"
        )
    if kline.close_time_ms < kline.open_time_ms:
        raise fields.fail("close time is before open time")
    taker = kline.taker_buy_base_volume
    if taker is not None and taker > kline.volume:
        raise fields.fail(f"taker buy volume {taker} exceeds volume {kline.volume}")
    return kline


def _binance_kline(fields: _Fields) -> Kline:
    kline = Kline(
        open_time_ms=fields.time_ms(0, "open time"),
        close_time_ms=fields.time_ms(6, "close time"),
        open=fields.decimal(1, "open", positive=True),
        high=fields.decimal(2, "high", positive=True),
        low=fields.decimal(3, "low", positive=True),
        close=fields.decimal(4, "close", positive=True),
        volume=fields.decimal(5, "volume"),
        quote_volume=fields.decimal(7, "quote volume"),
        trade_count=fields.integer(8, "trade count"),
        taker_buy_base_volume=fields.decimal(9, "taker buy base volume"),
    )
    return _check_candle(fields, kline)


def _binance_trade(fields: _Fields) -> RecordedTrade:
    return RecordedTrade(
        trade_id=fields.integer(0, "trade id"),
        price=fields.decimal(1, "price", positive=True),
        quantity=fields.decimal(2, "quantity", positive=True),
        time_ms=fields.time_ms(4, "time"),
        buyer_is_maker=fields.boolean(5, "isBuyerMaker"),
    )


def _binance_agg_trade(fields: _Fields) -> RecordedTrade:
    return RecordedTrade(
        trade_id=fields.integer(0, "aggregate trade id"),
        price=fields.decimal(1, "price", positive=True),
        quantity=fields.decimal(2, "quantity", positive=True),
        time_ms=fields.time_ms(5, "time"),
        buyer_is_maker=fields.boolean(6, "isBuyerMaker"),
    )


def _is_header(values: Sequence[str]) -> bool:
    first = values[0].strip().lstrip("-")
    return not first.isdigit()


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    for line_number, values in enumerate(csv.reader(io.StringIO(text)), start=1):
        if values and any(value.strip() for value in values):
            yield line_number, values


def _read_text(path: Path) -> str:
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if len(members) != 1:
                    raise RecordedDataError(
                        str(path), None, f"zip holds {len(members)} .csv files, not exactly one"
                    )
                raw = archive.read(members[0])
        else:
            raw = path.read_bytes()
        return raw.decode("utf-8-sig")
    except (OSError, zipfile.BadZipFile) as error:
        raise RecordedDataError(str(path), None, f"cannot read: {error}") from error
    except UnicodeDecodeError as error:
        raise RecordedDataError(str(path), None, f"not UTF-8 text: {error}") from error


def _parse_binance(text: str, source: str) -> list[Kline] | list[RecordedTrade]:
    rows = list(_rows(text))
    if rows and _is_header(rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise RecordedDataError(source, None, "no data rows")
    width = len(rows[0][1])
    parse: Callable[[_Fields], Kline | RecordedTrade]
    if width == KLINE_COLUMNS:
        parse = _binance_kline
    elif width in TRADE_COLUMNS:
        parse = _binance_trade
    elif width == AGG_TRADE_COLUMNS:
        parse = _binance_agg_trade
    else:
        raise RecordedDataError(
            source,
            rows[0][0],
            f"{width} columns: not a Binance kline (12), trade (6 or 7) or aggTrades (8) file",
        )
    parsed: list[Kline | RecordedTrade] = []
    for line, values in rows:
        fields = _Fields(source, line, values)
        if len(values) != width:
            raise fields.fail(f"{len(values)} columns where the file has {width}")
        item = parse(fields)
        if parsed and _key(item) <= _key(parsed[-1]):
            raise fields.fail(f"not after the previous row ({_key(item)} <= {_key(parsed[-1])})")
        parsed.append(item)
    if width == KLINE_COLUMNS:
        return [item for item in parsed if isinstance(item, Kline)]
    return [item for item in parsed if isinstance(item, RecordedTrade)]


def _key(item: Kline | RecordedTrade) -> int:
    return item.open_time_ms if isinstance(item, Kline) else item.trade_id


def load_path(path: str | Path) -> list[Kline] | list[RecordedTrade]:
    """A Binance public data file: klines or trades (or aggTrades), .csv or a .zip of one."""
    path = Path(path)
    return _parse_binance(_read_text(path), str(path))


def _embedded_kline(fields: _Fields) -> Kline:
    open_time = fields.integer(0, "open_time_ms")
    kline = Kline(
        open_time_ms=open_time,
        close_time_ms=open_time + EMBEDDED_INTERVAL_MS - 1,
        open=fields.decimal(1, "open", positive=True),
        high=fields.decimal(2, "high", positive=True),
        low=fields.decimal(3, "low", positive=True),
        close=fields.decimal(4, "close", positive=True),
        volume=fields.decimal(5, "volume"),
        quote_volume=fields.optional_decimal(6, "quote_volume"),
        trade_count=fields.optional_integer(7, "trade_count"),
        taker_buy_base_volume=fields.optional_decimal(8, "taker_buy_base_volume"),
    )
    return _check_candle(fields, kline)


def parse_embedded(text: str, source: str) -> list[Kline]:
    """The normalized layout of the embedded file (see data/README.md), header required."""
    rows = list(_rows(text))
    if not rows or tuple(rows[0][1]) != EMBEDDED_COLUMNS:
        raise RecordedDataError(source, 1, f"header is not {','.join(EMBEDDED_COLUMNS)}")
    klines: list[Kline] = []
    for line, values in rows[1:]:
        fields = _Fields(source, line, values)
        if len(values) != len(EMBEDDED_COLUMNS):
            raise fields.fail(f"{len(values)} columns, not {len(EMBEDDED_COLUMNS)}")
        kline = _embedded_kline(fields)
        if klines and kline.open_time_ms <= klines[-1].open_time_ms:
            raise fields.fail("open time is not after the previous row's")
        klines.append(kline)
    return klines


def load_embedded() -> list[Kline]:
    """The real hourly Coinbase BTC/USD candles that ship with the package (data/README.md)."""
    resource = resources.files("cryptopipe_jobs") / "data" / EMBEDDED_FILE
    text = gzip.decompress(resource.read_bytes()).decode("ascii")
    return parse_embedded(text, f"cryptopipe_jobs/data/{EMBEDDED_FILE}")
