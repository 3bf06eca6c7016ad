"""Helpers for the aggregation tests: random trade streams, Kafka I/O, and the pandas reference.

The reference is an independent batch computation of what the streaming job must produce: per
micro-batch (phase), trades at or before the watermark are late; the rest are deduplicated by
(symbol, trade_id, event_time) and grouped into epoch-aligned windows per interval; a window is
final once the watermark reaches its end.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from pyspark.sql import SparkSession

from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName, schema_json
from cryptopipe_schemas.codec import decode, encode, encode_key
from cryptopipe_schemas.durations import parse_duration, parse_interval

T0_MS = 1_764_446_400_000  # 2025-11-29T20:00:00Z


def unique_symbols(count: int) -> list[str]:
    return [f"AG{uuid.uuid4().hex[:8].upper()}" for _ in range(count)]


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 2) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        doomed = sorted(set(names) & set(admin.list_topics()))
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30_000)
    finally:
        admin.close()


@dataclass
class Scratch:
    """What a test creates on the shared test bed (topics, HDFS folders, Hive databases), to be
    removed when it ends, passed or failed."""

    spark: SparkSession
    bootstrap: str
    topics: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        for database in self.databases:
            self.spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
        fs = HadoopFs(self.spark, "/")
        for path in self.paths:
            if fs.exists(path):
                fs.delete(path)
        delete_topics(self.bootstrap, self.topics)


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def trade_record(
    symbol: str, trade_id: int, ms: int, price: Decimal, qty: Decimal, maker: bool
) -> dict[str, Any]:
    return {
        "exchange": "binance",
        "symbol": symbol,
        "trade_id": trade_id,
        "price": price,
        "quantity": qty,
        "buyer_is_maker": maker,
        "trade_time": utc(ms),
        "event_time": utc(ms),
        "ingest_time": utc(ms),
    }


@dataclass
class TradeStream:
    """Trades per phase (each phase is produced, then processed as one micro-batch)."""

    phases: list[list[dict[str, Any]]]
    garbage: int


def random_stream(
    rng: random.Random,
    symbols: Sequence[str],
    phases: int,
    watermark_ms: int,
    span_ms: int = 150_000,
    late: bool = True,
) -> TradeStream:
    """Out-of-order trades with ties, duplicates, late trades, and trades at the watermark."""
    state = {s: (1000 * (i + 1), Decimal(rng.randint(100, 90_000))) for i, s in enumerate(symbols)}
    result: list[list[dict[str, Any]]] = []
    max_seen: int | None = None
    for phase in range(phases):
        start = T0_MS + phase * span_ms
        watermark = max(0, (max_seen or 0) - watermark_ms) if max_seen is not None else None
        batch: list[dict[str, Any]] = []
        for symbol in symbols:
            next_id, price = state[symbol]
            times = sorted(rng.randint(start, start + span_ms) for _ in range(rng.randint(60, 120)))
            for index, ms in enumerate(times):
                if index and rng.random() < 0.1:
                    ms = times[index - 1]  # same event time: ties by trade id
                    times[index] = ms
                price = max(Decimal(1), price + Decimal(rng.randint(-500, 500)) / 100)
                qty = Decimal(rng.randint(1, 10**9)) / Decimal(10**8)
                batch.append(trade_record(symbol, next_id, ms, price, qty, rng.random() < 0.5))
                next_id += 1
            if watermark is not None and late:
                late_times = [watermark - rng.randint(1, 40_000) for _ in range(rng.randint(2, 6))]
                late_times += [watermark, watermark + 1]  # at the watermark: late; one after: not
                for ms in late_times:
                    batch.append(trade_record(symbol, next_id, ms, price, Decimal("0.5"), False))
                    next_id += 1
            state[symbol] = (next_id, price)
        batch += [dict(t) for t in rng.sample(batch, 5)]  # duplicates from the broker's view
        rng.shuffle(batch)  # out of order
        result.append(batch)
        newest = max(t["event_time"] for t in batch)
        max_seen = max(max_seen or 0, int(newest.timestamp() * 1000))
    return TradeStream(result, garbage=3)


def produce(
    bootstrap: str, trades: Iterable[dict[str, Any]], garbage: int = 0, symbol: str | None = None
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for trade in trades:
        producer.send(
            topics.trades(trade["symbol"]),
            key=encode_key(trade["symbol"]),
            value=encode(SchemaName.TRADE, trade),
        )
    for index in range(garbage):
        assert symbol is not None
        producer.send(
            topics.trades(symbol), value=[b"not avro", b"\x00\x00\x00\x00\x01\xff", b""][index % 3]
        )
    producer.flush(timeout=60)
    producer.close()


def consume_all(
    bootstrap: str, names: Sequence[str], expected_at_least: int, timeout_s: float = 60
) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        *names,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    records: list[dict[str, Any]] = []
    deadline = dt.datetime.now() + dt.timedelta(seconds=timeout_s)
    while dt.datetime.now() < deadline:
        for message in consumer:
            records.append(decode(message.value).record)
        if len(records) >= expected_at_least:
            break
    consumer.close()
    return records


@dataclass(frozen=True)
class Reference:
    candles: pd.DataFrame  # one row per finalized (symbol, interval, window_start)
    late_trades: int
    final_watermark_ms: int


def reference(stream: TradeStream, intervals: Sequence[str], watermark: str) -> Reference:
    delay = parse_duration(watermark)
    watermark_ms, max_seen, late, kept = 0, 0, 0, []
    for batch in stream.phases:
        frame = pd.DataFrame(batch)
        frame["ms"] = frame["event_time"].map(lambda t: int(t.timestamp() * 1000))
        is_late = frame["ms"] <= watermark_ms
        late += int(is_late.sum())
        kept.append(frame[~is_late])
        max_seen = max(max_seen, int(frame["ms"].max()))
        watermark_ms = max(watermark_ms, max_seen - delay)
    trades = pd.concat(kept).drop_duplicates(["symbol", "trade_id", "ms"])
    rows = []
    for interval in intervals:
        length = parse_interval(interval)
        framed = trades.assign(start=trades["ms"] - trades["ms"] % length)
        for (symbol, start), group in framed.groupby(["symbol", "start"]):
            if start + length > watermark_ms:
                continue  # not final yet
            ordered = group.sort_values(["ms", "trade_id"])
            prices = ordered["price"].map(float).to_numpy()
            qty = ordered["quantity"]
            quote = sum(p * q for p, q in zip(ordered["price"], qty, strict=True))
            base = sum(qty)
            returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
            rows.append(
                {
                    "symbol": symbol,
                    "interval": interval,
                    "window_start": utc(int(start)),
                    "window_end": utc(int(start) + length),
                    "open": prices[0],
                    "high": float(ordered["price"].max()),
                    "low": float(ordered["price"].min()),
                    "close": prices[-1],
                    "base_volume": float(base),
                    "quote_volume": float(quote),
                    "vwap": float(quote / base),
                    "trade_count": len(ordered),
                    "taker_buy_volume": float(sum(qty[~ordered["buyer_is_maker"]])),
                    "taker_sell_volume": float(sum(qty[ordered["buyer_is_maker"]])),
                    "realized_volatility": math.sqrt(sum(r * r for r in returns))
                    if returns
                    else None,
                    "event_time": utc(int(ordered["ms"].max())),
                }
            )
    return Reference(pd.DataFrame(rows), late, watermark_ms)


def is_double(avro_type: Any) -> bool:
    return avro_type == "double" or (isinstance(avro_type, list) and "double" in avro_type)


# The Candle's figures, compared within a tolerance: its double fields, nullable or not.
NUMERIC = tuple(
    entry["name"] for entry in schema_json(SchemaName.CANDLE)["fields"] if is_double(entry["type"])
)


def as_utc(value: Any) -> dt.datetime:
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    moment: dt.datetime = value
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def absent(value: Any) -> bool:
    """None, or the NaN pandas puts in its place in a column of floats."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def keyed(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, dt.datetime], dict[str, Any]]:
    out = {}
    for row in rows:
        key = (row["symbol"], row["interval"], as_utc(row["window_start"]))
        assert key not in out, f"candle {key} twice"
        out[key] = row
    return out


def mismatches(actual: Iterable[dict[str, Any]], expected: pd.DataFrame) -> list[str]:
    """Differences between candles and the reference, in words (empty when equal)."""
    got, want = keyed(actual), keyed(expected.to_dict("records"))
    problems = [f"missing {k}" for k in sorted(set(want) - set(got))]
    problems += [f"unexpected {k}" for k in sorted(set(got) - set(want))]
    for key in sorted(set(got) & set(want)):
        a, e = got[key], want[key]
        if a["trade_count"] != e["trade_count"]:
            problems.append(f"{key} trade_count {a['trade_count']} != {e['trade_count']}")
        if as_utc(a["window_end"]) != e["window_end"] or as_utc(a["event_time"]) != e["event_time"]:
            problems.append(f"{key} times differ")
        if a.get("is_final", True) is not True:
            problems.append(f"{key} not final")
        for name in NUMERIC:
            x, y = a[name], e[name]
            if absent(x) != absent(y) or (
                not absent(x) and not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
            ):
                problems.append(f"{key} {name} {x} != {y}")
    return problems


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


class Driver:
    """cryptopipe-aggregate in its own process, as the SparkApplication's driver."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        handle = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cryptopipe_jobs.aggregate.main", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "TZ": "UTC", **(env or {})},
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]
