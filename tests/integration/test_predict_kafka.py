"""cryptopipe-predict as a process on the test bed's real Kafka and HDFS, with a tiny model.

Real hourly BTC/USD candles go in with redelivered copies and non-final versions; forecasts
come back from `forecasts.<symbol>` and from HDFS. The predictor first serves a baseline (no
version registered), then a version promoted while it runs; after SIGTERM and a restart it
rebuilds its history from Kafka and forecasts only new candles. Its Prometheus endpoint is
scraped along the way.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from net_support import free_port
from prometheus_client.parser import text_string_to_metric_families

from cryptopipe_jobs.predict.serving import MIN_CALIBRATION_ORIGINS
from cryptopipe_jobs.producer.recorded import Kline, load_embedded
from cryptopipe_jobs.storage.hdfs_storage import webhdfs_client
from cryptopipe_jobs.train.sources import klines_to_frame
from cryptopipe_model.baselines import Persistence, all_baselines
from cryptopipe_model.evaluate import walk_forward
from cryptopipe_model.lstm import LstmModel
from cryptopipe_model.registry import DataRange, LocalStorage, Registry
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import decode, encode, encode_key
from cryptopipe_schemas.spec import ModelSpec

pytestmark = pytest.mark.integration

HOUR = dt.timedelta(hours=1)
MODEL = {"interval": "1h", "lookback": 8, "horizon": 3, "layers": 1, "units": 4, "epochs": 1}
COVERAGE = 0.8


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def candle(
    symbol: str, kline: Kline, *, final: bool = True, close: float | None = None
) -> dict[str, Any]:
    frame = klines_to_frame([kline]).iloc[0]
    buy = float(kline.taker_buy_base_volume or 0)
    return {
        "symbol": symbol,
        "interval": "1h",
        "window_start": utc(kline.open_time_ms),
        "window_end": utc(kline.open_time_ms) + HOUR,
        "open": float(frame["open"]),
        "high": float(frame["high"]),
        "low": float(frame["low"]),
        "close": float(frame["close"]) if close is None else close,
        "base_volume": float(frame["base_volume"]),
        "quote_volume": float(frame["quote_volume"]),
        "vwap": float(frame["vwap"]),
        "trade_count": int(frame["trade_count"]),
        "taker_buy_volume": buy,
        "taker_sell_volume": float(frame["base_volume"]) - buy,
        "realized_volatility": None,
        "is_final": final,
        "event_time": utc(kline.close_time_ms),
        "ingest_time": dt.datetime.now(dt.UTC),
    }


class Predictor:
    """The entry point as a subprocess; its JSON log lines collected as they come."""

    def __init__(self, args: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cryptopipe_jobs.predict.main", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            if line.startswith("{"):
                self.logs.append(json.loads(line))

    def wait_log(self, match: Callable[[dict[str, Any]], bool], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(match(entry) for entry in list(self.logs)):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail("predictor log line not seen; stderr tail:\n" + "".join(self.raw[-30:]))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scraper:
    """The predictor's /metrics, parsed; waits for expected values (they follow Kafka's ack)."""

    def __init__(self, port: int, symbol: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.symbol = symbol

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as answer:
                return int(answer.status), answer.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), ""

    def samples(self) -> Samples:
        _, text = self.get("/metrics")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, samples: Samples, name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"symbol": self.symbol, **labels}.items())))

    def wait_for(self, expected: dict[str, float], timeout: float = 30) -> Samples:
        deadline = time.monotonic() + timeout
        while True:
            samples = self.samples()
            seen = {name: self.value(samples, name) for name in expected}
            if seen == expected or time.monotonic() > deadline:
                assert seen == expected
                return samples
            time.sleep(0.2)


P = "cryptopipe_predictor"


@pytest.fixture
def symbol() -> str:
    return f"P{uuid.uuid4().hex[:8].upper()}USDT"


@pytest.fixture
def data() -> tuple[pd.DataFrame, list[Kline]]:
    """A training frame and, right after it, the klines the test streams."""
    klines = load_embedded()[-400:]
    return klines_to_frame(klines[:300]), klines[300:385]


class Forecasts:
    def __init__(self, bootstrap: str, symbol: str) -> None:
        self.topic = topics.forecasts(symbol)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.consumer.assign([TopicPartition(self.topic, 0)])
        self.records: list[dict[str, Any]] = []
        self.keys: list[bytes] = []

    def read_until(
        self, count: int, timeout: float = 120, settle: float = 3.0
    ) -> list[dict[str, Any]]:
        """Read until `count` records arrived, then `settle` more seconds to catch any extra."""
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < deadline:
            for messages in self.consumer.poll(timeout_ms=500).values():
                for message in messages:
                    decoded = decode(message.value)
                    assert decoded.schema is SchemaName.FORECAST
                    self.records.append(decoded.record)
                    self.keys.append(message.key)
            if len(self.records) >= count:
                settled_at = settled_at or time.monotonic()
                if time.monotonic() - settled_at >= settle:
                    break
        return self.records


def send(producer: KafkaProducer, symbol: str, records: Sequence[dict[str, Any]]) -> None:
    for record in records:
        producer.send(
            topics.candles("1h", symbol),
            key=encode_key(symbol),
            value=encode(SchemaName.CANDLE, record),
        )
    producer.flush(timeout=30)


def check_batch(
    forecasts: Sequence[dict[str, Any]], origins: Sequence[dict[str, Any]], model: str
) -> None:
    """Exactly one forecast per step for each origin candle, in order, from `model`."""
    assert len(forecasts) == 3 * len(origins)
    for index, origin in enumerate(origins):
        steps = forecasts[3 * index : 3 * index + 3]
        assert [f["horizon_step"] for f in steps] == [1, 2, 3]
        for f in steps:
            assert f["made_at"] == origin["window_end"]
            assert f["target_time"] == origin["window_end"] + f["horizon_step"] * HOUR
            assert f["event_time"] == origin["event_time"]
            assert f["lower"] <= f["point"] <= f["upper"]
            assert f["lower"] < f["upper"]
            assert f["coverage"] == COVERAGE and f["interval"] == "1h"
            assert f["model"] == model
            if model == "persistence":
                assert f["point"] == origin["close"]


@pytest.fixture
def hdfs_base(hdfs_env: dict[str, str]) -> Iterator[str]:
    base = f"/test-predict/{uuid.uuid4().hex}"
    yield base
    webhdfs_client(hdfs_env["CRYPTOPIPE_WEBHDFS_URL"]).delete(base, recursive=True)


def test_predictor_end_to_end_with_hot_reload_and_restart(
    kafka_bootstrap: str,
    hdfs_env: dict[str, str],
    hdfs_base: str,
    tmp_path: Path,
    symbol: str,
    data: tuple[pd.DataFrame, list[Kline]],
) -> None:
    train_frame, klines = data
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "symbol": symbol,
                "model": {**MODEL, "coverage": COVERAGE},
                "sinks": {"hdfs": {"path": hdfs_base}},
            }
        )
    )
    registry_dir = tmp_path / "registry"
    port = free_port()
    args = [
        "--spec", str(spec),
        "--bootstrap-servers", kafka_bootstrap,
        "--registry", str(registry_dir),
        "--webhdfs-url", hdfs_env["CRYPTOPIPE_WEBHDFS_URL"],
        "--poll-seconds", "1",
        "--history", "200",
        "--metrics-port", str(port),
    ]  # fmt: skip
    scraper = Scraper(port, symbol)
    candles = [candle(symbol, k) for k in klines]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    forecasts = Forecasts(kafka_bootstrap, symbol)
    predictor = Predictor(args)
    try:
        # 1. Nothing registered: persistence. Redelivered and non-final candles change nothing.
        predictor.wait_log(lambda e: e["message"] == "predictor ready")
        first = candles[:60]
        stream = [
            *first[:30],
            *first[10:20],  # redelivered
            candle(symbol, klines[30], final=False, close=1.0),  # not final yet
            *first[30:],
            *first[55:60],  # redelivered
            candle(symbol, klines[60], final=False, close=1.0),  # the next window, not final
        ]
        send(producer, symbol, stream)
        # A baseline calibrates its interval on the history: it starts once enough is kept.
        rows = Persistence(3, COVERAGE).fit(train_frame).min_history()  # its interval: 1 return
        warm = rows + 3 + MIN_CALIBRATION_ORIGINS
        origins = first[warm - 1 :]
        got = forecasts.read_until(3 * len(origins))
        check_batch(got, origins, "persistence")
        assert all(key == encode_key(symbol) for key in forecasts.keys)
        samples = scraper.wait_for(
            {
                f"{P}_candles_consumed_total": len(stream),
                f"{P}_duplicates_dropped_total": 15,
                f"{P}_forecasts_emitted_total": 3 * len(origins),
                f"{P}_inference_seconds_count": len(origins),
                f"{P}_model_reloads_total": 0,
                f"{P}_last_forecast_timestamp_seconds": origins[-1]["event_time"].timestamp(),
                # Each one-step forecast is judged once its target closes: all but the newest.
                f"{P}_realized_forecasts_total": len(origins) - 1,
            }
        )
        serving = {"model": "persistence", "kind": "baseline"}
        assert scraper.value(samples, f"{P}_serving_info", **serving) == 1
        # Persistence served: its realized errors are persistence's, to the last bit.
        served_error = scraper.value(samples, f"{P}_realized_abs_error_total", forecaster="served")
        assert served_error is not None and served_error > 0
        assert served_error == scraper.value(
            samples, f"{P}_realized_abs_error_total", forecaster="persistence"
        )
        assert scraper.get("/readyz")[0] == 200 and scraper.get("/healthz")[0] == 200

        # 2. A version promoted while the predictor runs is served from the next candle on.
        registry = Registry(LocalStorage(registry_dir))
        tiny = ModelSpec(lookback=8, horizon=3, layers=1, units=4, epochs=1, coverage=COVERAGE)
        model = LstmModel(tiny, seed=5)
        evaluation = walk_forward(
            train_frame,
            [*all_baselines(3, COVERAGE), model],
            horizon=3,
            coverage=COVERAGE,
            test_size=40,
            n_folds=2,
        )
        record = registry.register(model.fit(train_frame), evaluation, DataRange.of(train_frame))
        # The gate decides on merit; promote by hand if it kept the version as a candidate.
        registry.promote(record.version, "promoted by the test")
        label = f"lstm-{record.version}"
        predictor.wait_log(lambda e: e["message"] == "serving" and e.get("model") == label)
        second = candles[60:80]
        send(producer, symbol, second)
        got = forecasts.read_until(3 * (len(origins) + len(second)))
        check_batch(got[3 * len(origins) :], second, label)
        # The forecast matches the registered model's own, from the same candles.
        frame = klines_to_frame(klines[:80])
        expected = registry.load(record.version).predict_latest(frame)
        np.testing.assert_allclose([f["point"] for f in got[-3:]], expected.point[0], rtol=1e-5)
        samples = scraper.wait_for(
            {
                f"{P}_forecasts_emitted_total": 3 * (len(origins) + len(second)),
                f"{P}_inference_seconds_count": len(origins) + len(second),
                f"{P}_model_reloads_total": 1,
                f"{P}_last_forecast_timestamp_seconds": second[-1]["event_time"].timestamp(),
                f"{P}_realized_forecasts_total": len(origins) + len(second) - 1,
            }
        )
        serving = {"model": label, "kind": "model"}
        assert scraper.value(samples, f"{P}_serving_info", **serving) == 1
        old = {"model": "persistence", "kind": "baseline"}
        assert scraper.value(samples, f"{P}_serving_info", **old) is None

        # 3. SIGTERM: clean exit, offsets committed after the forecasts went out.
        assert predictor.stop() == 0
        assert any(e["message"] == "predictor stopped" for e in predictor.logs)
        candle_tp = TopicPartition(topics.candles("1h", symbol), 0)
        group = KafkaConsumer(
            bootstrap_servers=kafka_bootstrap, group_id=f"cryptopipe-predict-{symbol.lower()}"
        )
        end = group.end_offsets([candle_tp])[candle_tp]
        assert group.committed(candle_tp) == end == len(stream) + len(second)
        group.close()

        # 4. A restart rebuilds the history from Kafka and forecasts only what is new.
        predictor = Predictor(args)
        predictor.wait_log(lambda e: e["message"] == "predictor ready")
        third = candles[80:85]
        send(producer, symbol, [*third[:2], *third])
        got = forecasts.read_until(3 * (len(origins) + len(second) + len(third)))
        check_batch(got[3 * (len(origins) + len(second)) :], third, label)
        # A fresh process counts from zero; the gauge carries on from the newest forecast.
        scraper.wait_for(
            {
                f"{P}_forecasts_emitted_total": 3 * len(third),
                f"{P}_model_reloads_total": 0,
                f"{P}_last_forecast_timestamp_seconds": third[-1]["event_time"].timestamp(),
            }
        )
        assert predictor.stop() == 0
    finally:
        predictor.kill()
        producer.close()
        forecasts.consumer.close()

    # Every forecast is also on HDFS, as JSON lines under the spec's base folder.
    client = webhdfs_client(hdfs_env["CRYPTOPIPE_WEBHDFS_URL"])
    lines: list[dict[str, Any]] = []
    for root, _, names in client.walk(f"{hdfs_base}/forecasts/symbol={symbol}"):
        for name in names:
            with client.read(f"{root}/{name}") as reader:
                lines.extend(json.loads(line) for line in reader.read().splitlines())
    as_ms = [
        (round(f["made_at"].timestamp() * 1000), f["horizon_step"], f["model"], f["point"])
        for f in got
    ]
    assert sorted(
        (r["made_at"], r["horizon_step"], r["model"], r["point"]) for r in lines
    ) == sorted(as_ms)


def member_manifest(symbol: str, hdfs_path: str) -> str:
    """A rendered member, as the operator's pool ConfigMap holds it: identity and spec."""
    return yaml.safe_dump(
        {
            "apiVersion": "cryptopipe.io/v1alpha1",
            "kind": "CryptoPipeline",
            "metadata": {"name": symbol.lower(), "namespace": "team"},
            "spec": {
                "symbol": symbol,
                "model": {**MODEL, "coverage": COVERAGE},
                "sinks": {"hdfs": {"path": hdfs_path}},
            },
        }
    )


def test_one_predictor_serves_a_pool_whose_members_join_and_leave(
    kafka_bootstrap: str, tmp_path: Path, data: tuple[pd.DataFrame, list[Kline]]
) -> None:
    """Each member from its own registry (one has a promoted version, the others serve the
    baseline); a member that joins is served from its candles on, one that leaves no more."""
    train_frame, klines = data
    a, b, c = (f"P{uuid.uuid4().hex[:8].upper()}USDT" for _ in range(3))
    members = tmp_path / "members"
    members.mkdir()
    root = str(tmp_path / "hdfs")
    hdfs_path = "/cryptopipe"

    def join(symbol: str) -> None:
        staged = tmp_path / f"{symbol}.yaml"
        staged.write_text(member_manifest(symbol, hdfs_path))
        staged.rename(members / f"{symbol.lower()}.yaml")

    # A's registry (where the trainer of pipeline team/<a> writes) has a promoted version.
    registry = Registry(LocalStorage(Path(f"{root}{hdfs_path}/models/team/{a.lower()}")))
    tiny = ModelSpec(lookback=8, horizon=3, layers=1, units=4, epochs=1, coverage=COVERAGE)
    model = LstmModel(tiny, seed=5)
    evaluation = walk_forward(
        train_frame, [*all_baselines(3, COVERAGE), model], horizon=3, coverage=COVERAGE,
        test_size=40, n_folds=2,
    )  # fmt: skip
    record = registry.register(model.fit(train_frame), evaluation, DataRange.of(train_frame))
    registry.promote(record.version, "promoted by the test")
    join(a)
    join(b)
    args = [
        "--spec-dir", str(members),
        "--registry-root", root,
        "--bootstrap-servers", kafka_bootstrap,
        "--group-id", f"pool-{uuid.uuid4().hex[:6]}",
        "--poll-seconds", "1",
        "--history", "200",
    ]  # fmt: skip
    # A baseline calibrates its interval on the history: forecasts start once enough is kept.
    warm = Persistence(3, COVERAGE).fit(train_frame).min_history() + 3 + MIN_CALIBRATION_ORIGINS
    sent = 60
    baseline_forecasts = 3 * (sent - warm + 1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    streams = {s: Forecasts(kafka_bootstrap, s) for s in (a, b, c)}
    predictor = Predictor(args)
    try:
        predictor.wait_log(lambda e: e["message"] == "predictor ready")
        for symbol in (a, b):
            send(producer, symbol, [candle(symbol, k) for k in klines[:sent]])
        got_b = streams[b].read_until(baseline_forecasts)
        assert len(got_b) == baseline_forecasts
        assert {(f["symbol"], f["model"]) for f in got_b} == {(b, "persistence")}
        got_a = streams[a].read_until(3)
        assert {(f["symbol"], f["model"]) for f in got_a} == {(a, f"lstm-{record.version}")}
        # C joins while the predictor runs: served from its first candles on.
        join(c)
        predictor.wait_log(lambda e: e["message"] == "member joined" and e.get("symbol") == c)
        send(producer, c, [candle(c, k) for k in klines[:sent]])
        got_c = streams[c].read_until(baseline_forecasts)
        assert len(got_c) == baseline_forecasts and {f["symbol"] for f in got_c} == {c}
        # B leaves: its next candles are not forecast; A's still are.
        (members / f"{b.lower()}.yaml").unlink()
        predictor.wait_log(lambda e: e["message"] == "member left" and e.get("symbol") == b)
        a_before = len(streams[a].read_until(len(got_a), timeout=5))
        send(producer, b, [candle(b, k) for k in klines[sent : sent + 10]])
        send(producer, a, [candle(a, k) for k in klines[sent : sent + 10]])
        assert len(streams[a].read_until(a_before + 30)) == a_before + 30
        assert len(streams[b].read_until(baseline_forecasts + 1, timeout=8)) == baseline_forecasts
        assert predictor.stop() == 0
    finally:
        predictor.kill()
        producer.close()
