from __future__ import annotations

from pathlib import Path

import pytest

from cryptopipe_jobs.local import plan
from cryptopipe_jobs.local.run import down_components
from cryptopipe_schemas.spec import SourceKind, spec_from_document

pytestmark = pytest.mark.unit

ENDPOINTS = plan.Endpoints("127.0.0.1:19092", "hdfs://127.0.0.1:18020", "http://127.0.0.1:19870",
                           "thrift://127.0.0.1:19083", "/jars/a.jar,/jars/b.jar")  # fmt: skip
OPTIONS = plan.Options(
    symbols=["BTCUSDT"], live=False, data=None, state=Path("/state"), repo=Path("/repo")
)


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_local_pipeline_is_a_valid_replay_pipeline_and_the_live_one_streams() -> None:
    replay = spec_from_document(plan.pipeline_manifest("BTCUSDT", live=False))
    assert replay.source.kind is SourceKind.REPLAY and replay.source.replay.speed == 0
    assert replay.source.replay.tail == plan.REPLAY_TAIL
    whole = spec_from_document(plan.pipeline_manifest("BTCUSDT", live=False, tail=0))
    assert whole.source.replay.tail == 0  # a user's own recording (--data) is replayed whole
    assert replay.model.interval in replay.intervals
    live = spec_from_document(plan.pipeline_manifest("ETHUSDT", live=True))
    assert live.source.kind is SourceKind.BINANCE and "1m" in live.intervals


def test_every_stage_reads_the_same_spec_and_endpoints() -> None:
    spec = str(plan.spec_path(OPTIONS, "BTCUSDT"))
    producer = plan.producer(OPTIONS, ENDPOINTS).argv
    aggregator = plan.aggregator(OPTIONS, ENDPOINTS).argv
    trainer = plan.trainer(OPTIONS, ENDPOINTS, "BTCUSDT").argv
    predictor = plan.predictor(OPTIONS, ENDPOINTS, "BTCUSDT").argv
    for argv in (producer, aggregator, trainer, predictor):
        assert _flag(argv, "--spec") == spec
    assert (
        _flag(producer, "--bootstrap-servers")
        == _flag(predictor, "--bootstrap-servers")
        == "127.0.0.1:19092"
    )
    assert _flag(aggregator, "--jars") == "/jars/a.jar,/jars/b.jar"
    assert _flag(trainer, "--registry") == _flag(predictor, "--registry") == "/state/models/btcusdt"
    assert "--data" not in producer
    with_data = plan.producer(
        plan.Options(["BTCUSDT"], False, "/d/klines.zip", Path("/s"), Path("/r")), ENDPOINTS
    )
    assert _flag(with_data.argv, "--data") == "/d/klines.zip"


def test_the_dashboard_gets_the_registry_per_symbol_and_binds_to_loopback() -> None:
    argv = plan.dashboard(OPTIONS, ENDPOINTS).argv
    assert argv[argv.index("run") + 1] == "/repo/dashboard/cryptopipe_dashboard/app.py"
    assert _flag(argv, "--server.address") == "127.0.0.1"
    assert _flag(argv, "--registry") == "/state/models/{symbol}"


def test_components_reported_down_are_the_ones_to_start_and_stop() -> None:
    status = (
        "component  version    health    address   detail\n"
        "kafka      4.1.2      healthy   127.0.0.1:19092  up\n"
        "hdfs       3.4.2      DOWN      hdfs://127.0.0.1:18020  not running\n"
        "postgres   15         DOWN      127.0.0.1:15432  not running\n"
        "hive       3.1.3      DOWN      thrift://x  not running\n"
        "run folder: /tmp/x\n"
    )
    # postgres too: `up hive` starts it, so a run that started it stops it.
    assert down_components(status) == ["hdfs", "postgres", "hive"]
