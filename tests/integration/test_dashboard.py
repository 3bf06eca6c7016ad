"""The dashboard's pages through Streamlit's AppTest, fed by real readers: candles and forecasts
on the test bed's Kafka, a model registry written by the real registry code."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Image

from cryptopipe_model.registry import DataRange, LocalStorage, Registry
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import encode, encode_key
from cryptopipe_schemas.spec import ModelSpec
from model_support import candle_frame, trained

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "cryptopipe_dashboard" / "app.py")
HOUR = dt.timedelta(hours=1)
START = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def _candle(symbol: str, index: int, close: float, *, final: bool = True) -> dict[str, Any]:
    start = START + index * HOUR
    return {
        "symbol": symbol,
        "interval": "1h",
        "window_start": start,
        "window_end": start + HOUR,
        "open": close - 5,
        "high": close + 10,
        "low": close - 12,
        "close": close,
        "base_volume": 12.5,
        "quote_volume": 12.5 * close,
        "vwap": close - 1,
        "trade_count": 40 + index,
        "taker_buy_volume": 7.0,
        "taker_sell_volume": 5.5,
        "realized_volatility": 0.002,
        "is_final": final,
        "event_time": start + HOUR - dt.timedelta(seconds=1),
        "ingest_time": start + HOUR,
    }


def _forecast(symbol: str, made_index: int, step: int, point: float, model: str) -> dict[str, Any]:
    made_at = START + (made_index + 1) * HOUR
    return {
        "symbol": symbol,
        "interval": "1h",
        "made_at": made_at,
        "target_time": made_at + step * HOUR,
        "horizon_step": step,
        "point": point,
        "lower": point - 50,
        "upper": point + 50,
        "coverage": 0.9,
        "model": model,
        "event_time": made_at,
        "ingest_time": made_at,
    }


@pytest.fixture
def market(kafka_bootstrap: str) -> tuple[str, list[float]]:
    symbol = f"D{uuid.uuid4().hex[:8].upper()}USDT"
    closes = [97_000.0 + 40 * i for i in range(30)]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        [NewTopic(t, 1, 1) for t in (topics.candles("1h", symbol), topics.forecasts(symbol))]
    )
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    key = encode_key(symbol)
    for index, close in enumerate(closes):
        producer.send(
            topics.candles("1h", symbol),
            key=key,
            value=encode(SchemaName.CANDLE, _candle(symbol, index, close)),
        )
    # At-least-once delivery repeats a candle; an open window sends a provisional one.
    producer.send(
        topics.candles("1h", symbol),
        key=key,
        value=encode(SchemaName.CANDLE, _candle(symbol, 29, closes[29])),
    )
    producer.send(
        topics.candles("1h", symbol),
        key=key,
        value=encode(SchemaName.CANDLE, _candle(symbol, 30, 1.0, final=False)),
    )
    for made in range(20, 30):
        for step in (1, 2):
            # Forecasts that are always 10 off, where persistence is 40 or 80 off: MASE < 1.
            target_index = made + step
            actual = (
                closes[target_index]
                if target_index < len(closes)
                else closes[-1] + 40 * (target_index - 29)
            )
            producer.send(
                topics.forecasts(symbol),
                key=key,
                value=encode(
                    SchemaName.FORECAST, _forecast(symbol, made, step, actual + 10, "v0001")
                ),
            )
    producer.flush()
    producer.close()
    return symbol, closes


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    rng = np.random.default_rng(0)
    steps = np.where(np.arange(300) % 2 == 0, 0.02, -0.02) + rng.normal(0, 0.002, 300)
    frame = candle_frame(100 * np.exp(np.cumsum(steps)), spread=0.002)
    predictor, evaluation = trained(
        frame, ModelSpec(lookback=8, horizon=2, layers=1, units=8, epochs=3, learning_rate=0.01)
    )
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cfc0f01f0005000201f2b1b7e20000000049454e44ae426082"
    )
    Registry(LocalStorage(root)).register(
        predictor,
        evaluation,
        DataRange.of(frame),
        extra={"report.md": b"# Walk-forward report\n", "errors.png": png},
    )
    return root


def _app(monkeypatch: pytest.MonkeyPatch, *flags: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", *flags])
    app = AppTest.from_file(APP, default_timeout=90)
    app.run()
    assert not app.exception, app.exception
    return app


def _texts(app: AppTest) -> str:
    parts = [
        element.value
        for kind in ("markdown", "caption", "warning", "info", "error")
        for element in getattr(app, kind)
    ]
    return "\n".join(str(part) for part in parts)


def test_market_page_shows_candles_forecasts_and_accuracy(
    market: tuple[str, list[float]], kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    symbol, closes = market
    app = _app(
        monkeypatch, "--kafka-bootstrap", kafka_bootstrap, "--symbols", symbol, "--intervals", "1h"
    )
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Last close"] == f"{closes[-1]:,.2f}"  # the provisional candle is not shown
    assert metrics["Trades in last candle"] == "69"
    ratio = float(metrics["MASE against persistence (realized)"])
    assert 0 < ratio < 1
    assert "Serving: **v0001**" in _texts(app)
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2  # candles with forecasts, and the error comparison
    assert "synthetic" not in _texts(app)


def test_a_synthetic_symbol_is_never_shown_as_market_data(
    market: tuple[str, list[float]], kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    symbol, _ = market
    app = _app(
        monkeypatch, "--kafka-bootstrap", kafka_bootstrap, "--symbols", symbol,
        "--intervals", "1h", "--synthetic-symbols", symbol,
    )  # fmt: skip
    (warning,) = [w.value for w in app.warning if "synthetic" in str(w.value)]
    assert f"{symbol}: synthetic trades" in warning and "not market data" in warning


def test_pipelines_page_shows_freshness_and_the_training_report(
    market: tuple[str, list[float]],
    kafka_bootstrap: str,
    registry_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    symbol, _ = market
    app = _app(
        monkeypatch,
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--symbols",
        symbol,
        "--registry",
        str(registry_root),
    )
    app.switch_page("pages/pipelines.py").run()
    assert not app.exception, app.exception
    text = _texts(app)
    assert "Data freshness: no trades yet" in text
    assert "Latest version **v0001**" in text
    assert "Walk-forward report" in text
    images = [image for image in app.get("image") if isinstance(image, Image)]
    assert [caption for image in images for caption in image.captions] == ["errors.png"]


def test_with_kafka_down_the_pages_say_so_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(
        monkeypatch, "--kafka-bootstrap", "127.0.0.1:9", "--symbols", "BTCUSDT", "--intervals", "1h"
    )
    assert "Kafka is not reachable" in _texts(app)
    app.switch_page("pages/pipelines.py").run()
    assert not app.exception, app.exception
    assert "Kafka is not reachable" in _texts(app)
    assert "No training report yet." in _texts(app)
