"""What the local pipeline runs: each stage's command line, from the spec and the endpoints.

Pure: endpoints and paths in, argv out, so the plan is checked without starting anything.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopipe_schemas.spec import API_GROUP, API_VERSION, KIND, HdfsSink
from cryptopipe_schemas.storage import checkpoint_location, storage_base

DASHBOARD_PORT = 8501
PRODUCER_METRICS_PORT = 9108
AGGREGATOR_METRICS_PORT = 9109


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    hdfs_url: str
    webhdfs_url: str
    metastore_uri: str
    spark_jars: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        """From `scripts/testbed env` (the variables the test bed prints)."""
        return cls(
            kafka_bootstrap=env["CRYPTOPIPE_KAFKA_BOOTSTRAP"],
            hdfs_url=env["CRYPTOPIPE_HDFS_URL"],
            webhdfs_url=env["CRYPTOPIPE_WEBHDFS_URL"],
            metastore_uri=env["CRYPTOPIPE_HIVE_METASTORE_URI"],
            spark_jars=env["CRYPTOPIPE_SPARK_JARS"],
        )


# The newest 5,000 hours (about 7 months) of the bundled history: the trainer reads only the
# newest 4,000 candles (--rows), and aggregating all 2.3 years would cost minutes more.
REPLAY_TAIL = 5000


@dataclass(frozen=True)
class Options:
    symbols: Sequence[str]
    live: bool
    data: str | None
    state: Path
    repo: Path
    dashboard_port: int = DASHBOARD_PORT
    producer_metrics_port: int = PRODUCER_METRICS_PORT  # 0 turns an endpoint off
    aggregator_metrics_port: int = AGGREGATOR_METRICS_PORT


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]


def pipeline_manifest(symbol: str, live: bool, tail: int = REPLAY_TAIL) -> dict[str, Any]:
    """The CryptoPipeline the local run stands for: hourly candles and an hourly model."""
    replay = {"data": "embedded", "speed": 0, "shiftToNow": True, "tail": tail}
    source: dict[str, Any] = {"kind": "binance"} if live else {"kind": "replay", "replay": replay}
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": f"{symbol.lower()}-local"},
        "spec": {
            "symbol": symbol,
            "source": source,
            "intervals": ["1m", "1h"] if live else ["1h"],
            "watermark": "30s" if live else "2m",
            "model": {"interval": "1h", "lookback": 48, "horizon": 6, "epochs": 10},
            "sinks": {"sheets": {"enabled": False}},
        },
    }


def spec_path(options: Options, symbol: str) -> Path:
    return options.state / f"{symbol.lower()}.yaml"


def registry_path(options: Options, symbol: str) -> Path:
    return options.state / "models" / symbol.lower()


def _cli(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def producer(options: Options, endpoints: Endpoints) -> Stage:
    argv = [
        *_cli("cryptopipe_jobs.producer.main"),
        "--bootstrap-servers",
        endpoints.kafka_bootstrap,
    ]
    for symbol in options.symbols:
        argv += ["--spec", str(spec_path(options, symbol))]
    argv += ["--metrics-port", str(options.producer_metrics_port)]
    if options.data:
        argv += ["--data", options.data]
    return Stage("producer", argv)


def hive_ddl(options: Options, endpoints: Endpoints, symbol: str) -> Stage:
    argv = [
        *_cli("cryptopipe_jobs.sinks.hive_ddl"),
        "--spec", str(spec_path(options, symbol)),
        "--metastore-uri", endpoints.metastore_uri,
        "--hdfs-url", endpoints.hdfs_url,
        "--ddl-dir", str(options.repo / "hive"),
    ]  # fmt: skip
    return Stage(f"hive tables {symbol}", argv)


def checkpoint(options: Options, endpoints: Endpoints) -> str:
    symbols = "-".join(sorted(options.symbols)).lower()
    base = storage_base(endpoints.hdfs_url, HdfsSink().path)
    return checkpoint_location(base, f"local/{symbols}")


def aggregator(options: Options, endpoints: Endpoints) -> Stage:
    argv = [
        *_cli("cryptopipe_jobs.aggregate.main"),
        "--bootstrap-servers",
        endpoints.kafka_bootstrap,
    ]
    for symbol in options.symbols:
        argv += ["--spec", str(spec_path(options, symbol))]
    argv += [
        "--hdfs-url", endpoints.hdfs_url,
        "--metastore-uri", endpoints.metastore_uri,
        "--jars", endpoints.spark_jars,
        "--metrics-port", str(options.aggregator_metrics_port),
        # One checkpoint per set of symbols: a streaming query cannot change its sources.
        "--checkpoint", checkpoint(options, endpoints),
    ]  # fmt: skip
    return Stage("aggregator", argv)


def trainer(options: Options, endpoints: Endpoints, symbol: str) -> Stage:
    argv = [
        *_cli("cryptopipe_jobs.train.main"),
        "--spec", str(spec_path(options, symbol)),
        "--registry", str(registry_path(options, symbol)),
        "--webhdfs-url", endpoints.webhdfs_url,
        "--hdfs-url", endpoints.hdfs_url,
        # A small model: the last ~5 months of hours, evaluated walk-forward on the last 600.
        "--rows", "4000", "--test-size", "600", "--folds", "2",
        "--report-dir", str(options.state / "reports" / symbol.lower()),
    ]  # fmt: skip
    return Stage(f"trainer {symbol}", argv)


def predictor(options: Options, endpoints: Endpoints, symbol: str) -> Stage:
    argv = [
        *_cli("cryptopipe_jobs.predict.main"),
        "--spec", str(spec_path(options, symbol)),
        "--bootstrap-servers", endpoints.kafka_bootstrap,
        "--registry", str(registry_path(options, symbol)),
        "--poll-seconds", "10",
        # Forecast the newest candles at once, not only those that arrive later: a replay ends.
        "--backfill", "200",
    ]  # fmt: skip
    return Stage(f"predictor {symbol}", argv)


def dashboard(options: Options, endpoints: Endpoints) -> Stage:
    app = options.repo / "dashboard" / "cryptopipe_dashboard" / "app.py"
    argv = [
        *_cli("streamlit"), "run", str(app),
        "--server.address", "127.0.0.1", "--server.port", str(options.dashboard_port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # no Deploy button or developer menu for viewers
        "--",
        "--kafka-bootstrap", endpoints.kafka_bootstrap,
        "--symbols", ",".join(options.symbols),
        "--intervals", "1h",
        "--registry", str(options.state / "models" / "{symbol}"),
    ]  # fmt: skip
    return Stage("dashboard", argv)
