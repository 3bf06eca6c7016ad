"""cryptopipe-producer as a process, on the test bed's real Kafka, against a local Binance.

Faults: forced disconnects, trades withheld from the stream, a SIGKILL and a restart. The
topic must end with every trade the exchange made, once, in order.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from avro.io import BinaryDecoder, DatumReader
from avro.schema import parse as parse_avro
from confluent_support import confluent_records
from fakes.binance_server import FakeBinance
from kafka import KafkaAdminClient, KafkaProducer
from kafka_support import read_topic
from net_support import free_port

from cryptopipe_jobs.kafka_io import TopicSettings, ensure_topics
from cryptopipe_jobs.producer import replay
from cryptopipe_jobs.producer.committed import CommittedRecords
from cryptopipe_jobs.producer.recorded import load_embedded
from cryptopipe_jobs.producer.resume import last_trades
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName, schema_json
from cryptopipe_schemas.codec import decode, encode, encode_key
from cryptopipe_schemas.registry import register_all, resolve
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration


def _symbol() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}USDT"


def _spec_file(tmp_path: Path, symbol: str, source: dict[str, Any]) -> Path:
    manifest = {
        "apiVersion": "cryptopipe.io/v1alpha1",
        "kind": "CryptoPipeline",
        "metadata": {"name": symbol.lower()},
        "spec": {"symbol": symbol, "source": source},
    }
    path = tmp_path / f"{symbol}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


class ProducerProcess:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def signal(self, signum: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=60)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture
def producer_factory(
    tmp_path: Path, kafka_bootstrap: str
) -> Iterator[Callable[..., ProducerProcess]]:
    started: list[ProducerProcess] = []

    def make(specs: list[Path], *extra: str) -> ProducerProcess:
        argv = [
            sys.executable,
            "-m",
            "cryptopipe_jobs.producer.main",
            "--bootstrap-servers",
            kafka_bootstrap,
        ]
        for spec in specs:
            argv += ["--spec", str(spec)]
        producer = ProducerProcess([*argv, *extra], tmp_path / "producer.log")
        producer.start()
        started.append(producer)
        return producer

    yield make
    for producer in started:
        if producer.proc is not None and producer.proc.poll() is None:
            producer.proc.kill()
            producer.proc.wait()


def _wait(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 60,
    log: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log()}" if log else ""))


def _trade_ids(bootstrap: str, symbol: str) -> list[int]:
    return [
        int(decode(value).record["trade_id"])
        for value in read_topic(bootstrap, topics.trades(symbol))
    ]


def test_live_trades_survive_disconnects_withheld_ids_and_a_sigkill(
    tmp_path: Path, kafka_bootstrap: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    symbols = [_symbol(), _symbol()]
    metrics_port = free_port()
    with FakeBinance(symbols, history=5) as exchange:
        specs = [_spec_file(tmp_path, s, {"kind": "binance"}) for s in symbols]
        args = ["--binance-ws-url", exchange.ws_url, "--binance-rest-url", exchange.rest_url]
        producer = producer_factory(specs, *args, "--metrics-port", str(metrics_port))
        _wait(lambda: exchange.client_count() > 0, "the producer to connect", log=producer.tail)

        def caught_up(symbol: str) -> Callable[[], bool]:
            return lambda: _trade_ids(kafka_bootstrap, symbol)[-1:] == [exchange.last_id(symbol)]

        exchange.emit(40)
        exchange.withhold_next(symbols[0], 7)
        exchange.emit(10)
        exchange.disconnect_all()
        exchange.emit(15)  # made while the producer reconnects: only REST has them
        _wait(lambda: exchange.client_count() > 0, "a reconnect", log=producer.tail)
        exchange.emit(5)
        for symbol in symbols:
            _wait(caught_up(symbol), f"{symbol} to catch up", log=producer.tail)

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        assert f'cryptopipe_producer_messages_in_total{{symbol="{symbols[0]}"}}' in metrics
        backfilled = f'cryptopipe_producer_backfilled_trades_total{{symbol="{symbols[0]}"}} '
        assert float(metrics.split(backfilled, 1)[1].split()[0]) >= 7  # at least the withheld
        assert urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz").status == 200

        assert producer.signal(signal.SIGKILL) == -signal.SIGKILL
        exchange.emit(30)  # made while no producer runs
        restarted = producer_factory(specs, *args, "--metrics-port", "0")
        _wait(
            lambda: exchange.client_count() > 0,
            "the restarted producer to connect",
            log=restarted.tail,
        )
        exchange.emit(3)
        for symbol in symbols:
            _wait(caught_up(symbol), f"{symbol} to catch up after the restart", log=restarted.tail)
        assert restarted.signal(signal.SIGTERM) == 0, restarted.tail()

        for symbol in symbols:
            published = _trade_ids(kafka_bootstrap, symbol)
            made = exchange.ids(symbol)
            assert published == sorted(set(published)), f"{symbol}: duplicates or disorder"
            # History before the first connection is not ours to take; everything after is.
            assert published == made[made.index(published[0]) :], f"{symbol}: gaps"
            assert len(published) >= 100


MALFORMED = [
    b"{not json",
    json.dumps({"stream": "x@trade", "data": {"e": "trade", "E": 1}}).encode(),
    json.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {
                "e": "trade",
                "E": 1764446400000,
                "s": "NOPEUSDT",
                "t": 1,
                "p": "1.0",
                "q": "1.0",
                "T": 1764446400000,
                "m": False,
            },
        }
    ).encode(),
]


def test_malformed_frames_go_to_the_dead_letter_topic_with_reasons(
    tmp_path: Path, kafka_bootstrap: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    symbol = _symbol()
    marker = uuid.uuid4().hex
    frames = [
        frame.replace(b"{", b'{"' + marker.encode() + b'": 0, ', 1)
        if i
        else frame + marker.encode()
        for i, frame in enumerate(MALFORMED)
    ]
    with FakeBinance([symbol]) as exchange:
        spec = _spec_file(tmp_path, symbol, {"kind": "binance"})
        producer = producer_factory(
            [spec],
            "--binance-ws-url",
            exchange.ws_url,
            "--binance-rest-url",
            exchange.rest_url,
            "--metrics-port",
            "0",
        )
        _wait(lambda: exchange.client_count() > 0, "the producer to connect", log=producer.tail)
        for frame in frames:
            exchange.inject(frame)
        exchange.emit(5)
        _wait(
            lambda: len(_trade_ids(kafka_bootstrap, symbol)) == 5,
            "the valid trades",
            log=producer.tail,
        )

        def ours() -> list[dict[str, Any]]:
            letters = [
                decode(v).record for v in read_topic(kafka_bootstrap, topics.deadletter("binance"))
            ]
            return [letter for letter in letters if marker.encode() in letter["raw"]]

        _wait(lambda: len(ours()) == len(frames), "the dead letters", log=producer.tail)
        assert producer.signal(signal.SIGTERM) == 0
    letters = ours()
    assert [letter["raw"] for letter in letters] == frames
    reasons = [letter["reason"] for letter in letters]
    assert reasons[0].startswith("not JSON")
    assert "missing field" in reasons[1]
    assert "unknown symbol 'NOPEUSDT'" in reasons[2]
    assert all(letter["source"] == "binance" and letter["ingest_time"] for letter in letters)


def _write_binance_klines(path: Path, count: int) -> int:
    """Real klines (the embedded Coinbase history) in Binance's kline CSV layout."""
    klines = [k for k in load_embedded()[:count]]
    with open(path, "w") as out:
        for k in klines:
            close_time = k.open_time_ms + 3_600_000 - 1
            out.write(
                f"{k.open_time_ms},{k.open},{k.high},{k.low},{k.close},{k.volume},{close_time},"
                f"0,0,0,0,0\n"
            )
    return sum(1 for k in klines if k.volume > 0)


def test_replay_publishes_every_trade_once_across_restarts(
    tmp_path: Path, kafka_bootstrap: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    symbol = _symbol()
    traded_klines = _write_binance_klines(tmp_path / "klines.csv", 60)
    spec = _spec_file(
        tmp_path, symbol, {"kind": "replay", "replay": {"speed": 0, "shiftToNow": True}}
    )
    first = producer_factory([spec], "--data", str(tmp_path / "klines.csv"), "--metrics-port", "0")
    assert first.proc is not None and first.proc.wait(timeout=120) == 0, first.tail()
    values = read_topic(kafka_bootstrap, topics.trades(symbol))
    ids = [int(decode(v).record["trade_id"]) for v in values]
    assert len(ids) == 4 * traded_klines
    assert ids == sorted(set(ids))

    # Read by an independent Avro implementation (the Apache `avro` package, not fastavro).
    reader = DatumReader(parse_avro(json.dumps(schema_json(SchemaName.TRADE))))
    record = reader.read(BinaryDecoder(io.BytesIO(values[0][5:])))
    assert isinstance(record, dict)
    assert record["symbol"] == symbol and record["price"] > 0
    # shiftToNow: the recording now ends at the time of the first run.
    last_event = decode(values[-1]).record["event_time"]
    assert abs(time.time() - last_event.timestamp()) < 120

    second = producer_factory([spec], "--data", str(tmp_path / "klines.csv"), "--metrics-port", "0")
    assert second.proc is not None and second.proc.wait(timeout=120) == 0, second.tail()
    assert _trade_ids(kafka_bootstrap, symbol) == ids, "a restarted replay repeated trades"


def test_synthetic_symbols_of_a_spec_folder_resume_after_sigterm_without_a_gap(
    tmp_path: Path, kafka_bootstrap: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    """Two synthetic symbols from a pool's members folder: live, paced trades labelled
    synthetic; a restart continues each symbol's ids and price where they stopped."""
    symbols = [_symbol(), _symbol()]
    members = tmp_path / "members"
    members.mkdir()
    for index, symbol in enumerate(symbols):
        source = {"kind": "synthetic", "synthetic": {"rate": 100, "seed": index}}
        _spec_file(tmp_path, symbol, source).rename(members / f"{symbol.lower()}.yaml")
    args = ("--spec-dir", str(members), "--metrics-port", "0", "--transactional-id", "synth-pool")

    def records(symbol: str) -> list[dict[str, Any]]:
        return [decode(v).record for v in read_topic(kafka_bootstrap, topics.trades(symbol))]

    first = producer_factory([], *args)
    _wait(lambda: all(len(records(s)) > 100 for s in symbols), "synthetic trades", 60, first.tail)
    assert first.signal(signal.SIGTERM) == 0, first.tail()
    before = {s: records(s) for s in symbols}
    second = producer_factory([], *args)
    _wait(
        lambda: all(len(records(s)) > len(before[s]) + 50 for s in symbols),
        "more trades after the restart",
        60,
        second.tail,
    )
    assert second.signal(signal.SIGTERM) == 0, second.tail()
    for symbol in symbols:
        after = records(symbol)
        assert [r["trade_id"] for r in after] == list(range(1, len(after) + 1)), symbol
        assert {r["exchange"] for r in after} == {"synthetic"}
        seam = len(before[symbol])
        assert abs(float(after[seam]["price"]) / float(after[seam - 1]["price"]) - 1) < 0.01
        # Live: event times are the clock's, within seconds of now.
        assert abs(after[-1]["event_time"].timestamp() - time.time()) < 30


def test_an_invalid_spec_is_a_clear_error_before_anything_starts(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"symbol": "btc", "model": {"horizon": 0}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptopipe_jobs.producer.main",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--spec",
            str(spec),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "symbol: 'btc' does not look right" in result.stderr
    assert "model.horizon: must be at least 1" in result.stderr


def test_with_a_schema_registry_records_carry_its_ids(
    tmp_path: Path,
    kafka_bootstrap: str,
    testbed: TestbedSession,
    producer_factory: Callable[..., ProducerProcess],
) -> None:
    registry_url = testbed.ensure("registry")["CRYPTOPIPE_SCHEMA_REGISTRY_URL"]
    symbol = _symbol()
    _write_binance_klines(tmp_path / "klines.csv", 5)
    spec = _spec_file(tmp_path, symbol, {"kind": "replay", "replay": {"speed": 0}})
    argv = ["--data", str(tmp_path / "klines.csv"), "--metrics-port", "0"]
    producer = producer_factory([spec], *argv, "--schema-registry-url", registry_url)
    assert producer.proc is not None and producer.proc.wait(timeout=120) == 0, producer.tail()
    values = read_topic(kafka_bootstrap, topics.trades(symbol))
    assert values
    found = {int.from_bytes(value[1:5], "big") for value in values}
    assert len(found) == 1
    (registry_id,) = found
    assert resolve(registry_url, registry_id) is SchemaName.TRADE
    ids = register_all(registry_url)
    ours = [decode(value, ids=ids.names_by_id()).record for value in values]
    assert {trade["symbol"] for trade in ours} == {symbol}
    # A standard client, Confluent's deserializer with its registry client, reads the same.
    assert (
        confluent_records(kafka_bootstrap, topics.trades(symbol), registry_url, len(ours)) == ours
    )


def test_with_idle_after_replay_a_finished_replay_keeps_serving_until_sigterm(
    tmp_path: Path, kafka_bootstrap: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    symbol = _symbol()
    traded_klines = _write_binance_klines(tmp_path / "klines.csv", 10)
    spec = _spec_file(tmp_path, symbol, {"kind": "replay", "replay": {"speed": 0}})
    port = free_port()
    producer = producer_factory(
        [spec],
        "--data", str(tmp_path / "klines.csv"),
        "--metrics-port", str(port),
        "--idle-after-replay",
    )  # fmt: skip
    _wait(
        lambda: len(_trade_ids(kafka_bootstrap, symbol)) == 4 * traded_klines,
        "the whole replay in Kafka",
        log=producer.tail,
    )
    _wait(lambda: "replay finished" in producer.tail(), "the idle line", log=producer.tail)
    time.sleep(1)
    assert producer.proc is not None and producer.proc.poll() is None, producer.tail()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
        assert answer.status == 200
    assert producer.signal(signal.SIGTERM) == 0, producer.tail()
    assert len(_trade_ids(kafka_bootstrap, symbol)) == 4 * traded_klines


def test_a_second_producer_fences_the_first_and_every_trade_lands_once(
    tmp_path: Path, kafka_bootstrap: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    """Two producers of the same trades at once (a replacement pod beside a terminating one):
    the newer one fences the older, which stops with a clear error, and nothing is repeated."""
    symbol = _symbol()
    traded_klines = _write_binance_klines(tmp_path / "klines.csv", 1200)
    # 1,200 hours at 300,000x: about 15 s of replay, long enough to overlap two producers.
    spec = _spec_file(tmp_path, symbol, {"kind": "replay", "replay": {"speed": 300_000}})
    argv = ["--data", str(tmp_path / "klines.csv"), "--metrics-port", "0"]
    replayed = CommittedRecords(kafka_bootstrap, topics.trades(symbol))
    try:
        older = producer_factory([spec], *argv)
        _wait(lambda: replayed.count() > 500, "the first producer's trades", log=older.tail)
        overlap_at = replayed.count()
        newer = producer_factory([spec], *argv)
        assert older.proc is not None and newer.proc is not None
        assert older.proc.wait(timeout=60) == 1, older.tail()
        assert "fenced" in older.tail()
        assert newer.proc.wait(timeout=120) == 0, newer.tail()
    finally:
        replayed.close()
    ids = _trade_ids(kafka_bootstrap, symbol)
    assert overlap_at < len(ids), "the first producer finished before the second started"
    assert 4 * traded_klines - overlap_at > 1000, "too little left to overlap: slow the replay"
    assert len(ids) == 4 * traded_klines
    assert ids == sorted(set(ids)), "trades repeated or out of order"


def test_resume_skips_aborted_transactions_and_transaction_markers(kafka_bootstrap: str) -> None:
    symbol = _symbol()
    topic = topics.trades(symbol)
    trades = replay.klines_to_trades(load_embedded()[:5], symbol, "binance")
    now = dt.datetime.now(dt.UTC)
    records = [replay.to_record(t, 0, now) for t in trades]
    assert len(records) >= 12
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        ensure_topics(admin, [topic], TopicSettings())
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"test.{symbol}", acks="all"
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for record in records[:8]:
            producer.send(topic, key=encode_key(symbol), value=encode(SchemaName.TRADE, record))
        producer.commit_transaction()
        producer.begin_transaction()
        for record in records[8:12]:
            producer.send(topic, key=encode_key(symbol), value=encode(SchemaName.TRADE, record))
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close()
    last = last_trades(kafka_bootstrap, [symbol])
    assert last[symbol].trade_id == records[7]["trade_id"]
    assert _trade_ids(kafka_bootstrap, symbol) == [r["trade_id"] for r in records[:8]]
