"""Status computation: conditions, phase, transitions; drift detection; the generated CRD."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from cryptopipe_jobs.predict.metrics import PredictorMetrics
from cryptopipe_operator import children, drift, status
from cryptopipe_operator.children import predictor
from cryptopipe_operator.children.common import Pipeline
from cryptopipe_operator.config import config_from_mapping
from cryptopipe_operator.crd import crd_manifest
from cryptopipe_operator.handlers import bearer_token
from cryptopipe_operator.reconcile import symbol_conflicts
from cryptopipe_operator.scrape import last_forecast_time, newest_trade_age
from cryptopipe_schemas.spec import parse_spec

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def deployment(available: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 2,
            "availableReplicas": available,
            "updatedReplicas": available,
        },
    }


def job(name: str, state: str | None, at: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    conds = [{"type": state, "status": "True", "message": "BackoffLimitExceeded"}] if state else []
    return {"metadata": {"name": name}, "status": {"conditions": conds, "startTime": at}}


def trainer_pod(result: dict[str, Any]) -> dict[str, Any]:
    term = {"exitCode": 0, "message": json.dumps(result), "finishedAt": "2026-01-01T01:00:00Z"}
    return {"status": {"containerStatuses": [{"state": {"terminated": term}}]}}


def healthy(**changes: Any) -> status.Observed:
    base: dict[str, Any] = dict(
        generation=3,
        suspend=False,
        dashboard_enabled=True,
        producer=deployment(1),
        predictor=deployment(1),
        dashboard=deployment(1),
        spark_application={"status": {"applicationState": {"state": "RUNNING"}}},
        training_jobs=[job("t1", "Complete")],
        trainer_pods=[
            trainer_pod({"version": "v7", "promoted": True, "reason": "beats", "mase": 0.8})
        ],
        newest_trade_age=4.0,
    )
    base.update(changes)
    return status.Observed(**base)


def by_type(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_a_healthy_pipeline_is_ready_and_running_with_its_model() -> None:
    st = status.compute(healthy(), None, "T1")
    conds = by_type(st)
    assert st["phase"] == "Running" and st["observedGeneration"] == 3
    assert set(conds) == set(status.CONDITION_TYPES)
    assert all(c["status"] == "True" for c in conds.values())
    assert all(
        c["observedGeneration"] == 3 and c["lastTransitionTime"] == "T1" for c in conds.values()
    )
    assert st["model"] == {"version": "v7", "promoted": True, "mase": 0.8}


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = status.compute(healthy(), None, "T1")
    same = status.compute(healthy(), first, "T2")
    assert not status.status_changed(same, first)
    broken = status.compute(healthy(producer=deployment(0)), first, "T3")
    conds = by_type(broken)
    assert conds["ProducerReady"]["lastTransitionTime"] == "T3"
    assert conds["PredictorReady"]["lastTransitionTime"] == "T1"
    assert conds["Ready"]["status"] == "False" and "ProducerReady" in conds["Ready"]["message"]
    assert broken["phase"] == "Provisioning"


def test_missing_dependencies_are_named() -> None:
    deps = status.Dependencies(("CRD sparkapplications.sparkoperator.k8s.io is not installed",))
    st = status.compute(healthy(dependencies=deps), None, "T")
    conds = by_type(st)
    assert st["phase"] == "Pending"
    assert conds["DependenciesReady"]["status"] == "False"
    assert "sparkapplications" in conds["DependenciesReady"]["message"]
    assert conds["Ready"]["reason"] == "DependenciesNotReady"


def test_below_baseline_is_reported_and_does_not_block_ready() -> None:
    pods = [
        trainer_pod({"version": "v8", "promoted": False, "reason": "does not beat persistence"})
    ]
    conds = by_type(status.compute(healthy(trainer_pods=pods), None, "T"))
    assert conds["ModelPromoted"]["status"] == "False"
    assert conds["ModelPromoted"]["reason"] == "BelowBaseline"
    assert "persistence" in conds["ModelPromoted"]["message"]
    assert conds["Ready"]["status"] == "True"


def test_training_and_spark_failures() -> None:
    st = status.compute(healthy(training_jobs=[job("t1", None)], trainer_pods=[]), None, "T")
    assert st["phase"] == "Training" and by_type(st)["ModelTrained"]["reason"] == "Training"
    # A baseline serves meanwhile: Ready does not wait for the first model.
    assert by_type(st)["Ready"]["status"] == "True"
    assert "a baseline serves the forecasts" in by_type(st)["Ready"]["message"]
    failed = {"status": {"applicationState": {"state": "FAILED", "errorMessage": "driver OOM"}}}
    st = status.compute(healthy(spark_application=failed), None, "T")
    assert st["phase"] == "Degraded"
    assert by_type(st)["AggregatorRunning"]["message"].endswith("driver OOM")
    assert by_type(st)["Ready"]["reason"] == "AggregatorRunningFailed"
    st = status.compute(healthy(training_jobs=[job("t1", "Failed")], trainer_pods=[]), None, "T")
    assert by_type(st)["ModelTrained"]["reason"] == "TrainingFailed"


def test_stale_data_fails_ready_and_unmeasured_data_does_not() -> None:
    stale = healthy(newest_trade_age=900.0, newest_trade_time="2026-01-01T00:00:00Z")
    st = status.compute(stale, None, "T")
    assert by_type(st)["DataFresh"]["reason"] == "Stale" and st["phase"] == "Degraded"
    assert "no trade since 2026-01-01T00:00:00Z" in by_type(st)["DataFresh"]["message"]
    # The age is in no message: a status that changed with it would be a write per reconcile.
    for older, younger in ((900.0, 960.0), (4.0, 9.0)):
        before = status.compute(healthy(newest_trade_age=older), None, "T")
        later = status.compute(healthy(newest_trade_age=younger), before, "T2")
        assert not status.status_changed(later, before), (older, younger)
    st = status.compute(healthy(newest_trade_age=None), None, "T")
    assert by_type(st)["DataFresh"]["status"] == "Unknown" and st["phase"] == "Running"


def test_suspended_and_invalid() -> None:
    st = status.compute(healthy(suspend=True, spark_application=None), None, "T")
    assert st["phase"] == "Suspended" and by_type(st)["Ready"]["reason"] == "Suspended"
    st = status.compute(healthy(invalid=("spec.symbol: taken",)), None, "T")
    assert st["phase"] == "Invalid"
    assert by_type(st)["Ready"] == {
        **by_type(st)["Ready"],
        "status": "False",
        "reason": "InvalidSpec",
        "message": "spec.symbol: taken",
    }


def test_producer_metrics_give_the_newest_trade_age() -> None:
    text = (
        "# TYPE cryptopipe_producer_last_event_timestamp_seconds gauge\n"
        'cryptopipe_producer_last_event_timestamp_seconds{symbol="BTCUSDT"} 1000.0\n'
        'cryptopipe_producer_last_event_timestamp_seconds{symbol="ETHUSDT"} 500.0\n'
    )
    assert newest_trade_age(text, "BTCUSDT", 1030.0) == 30.0
    assert newest_trade_age(text, "SOLUSDT", 1030.0) is None


def test_predictor_metrics_give_the_last_forecast_time() -> None:
    # What the predictor really exposes, not a hand-written copy of it.
    metrics = PredictorMetrics("BTCUSDT")
    metrics.serving("lstm-v0003", "model", reload=False)
    assert last_forecast_time(generate_latest(metrics.registry).decode(), "BTCUSDT") is None
    metrics.forecasts_emitted(6, 1_795_989_600.75)  # 2026-11-29T22:00:00.75Z
    metrics.forecasts_emitted(6, 1_795_993_200.0)  # an hour later
    text = generate_latest(metrics.registry).decode()
    assert last_forecast_time(text, "BTCUSDT") == "2026-11-29T23:00:00Z"
    assert last_forecast_time(text, "btcusdt") == "2026-11-29T23:00:00Z"
    assert last_forecast_time(text, "ETHUSDT") is None
    # The producer's gauge is not mistaken for it, nor is another symbol's sample.
    other = (
        'cryptopipe_producer_last_event_timestamp_seconds{symbol="BTCUSDT"} 1.0e+09\n'
        'cryptopipe_predictor_last_forecast_timestamp_seconds{symbol="ETHUSDT"} 1.7e+09\n'
    )
    assert last_forecast_time(other, "BTCUSDT") is None
    assert last_forecast_time(other, "ETHUSDT") == "2023-11-14T22:13:20Z"


def test_last_forecast_time_goes_to_status_and_is_kept_when_unread() -> None:
    st = status.compute(healthy(last_forecast_time="2026-11-29T23:00:00Z"), None, "T")
    assert st["lastForecastTime"] == "2026-11-29T23:00:00Z"
    # The predictor unreachable for a while: the last known time stays, no status change.
    again = status.compute(healthy(), st, "T2")
    assert again["lastForecastTime"] == "2026-11-29T23:00:00Z"
    assert not status.status_changed(again, st)
    newer = status.compute(healthy(last_forecast_time="2026-11-30T00:00:00Z"), again, "T3")
    assert newer["lastForecastTime"] == "2026-11-30T00:00:00Z"
    assert status.status_changed(newer, again)
    assert "lastForecastTime" not in status.compute(healthy(), None, "T")


def test_the_predictor_exposes_the_metrics_the_status_reads() -> None:
    p = Pipeline("btc", "ns", parse_spec({"symbol": "BTCUSDT"}))
    objs = {o["metadata"]["name"]: o for o in children.desired(p, config_from_mapping({}))}
    deployment = objs[predictor.name(p)]
    service = objs[predictor.metrics_service_name(p)]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = container["args"][container["args"].index("--metrics-port") + 1]
    assert container["ports"] == [{"name": "metrics", "containerPort": int(port)}]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}


def test_a_second_pipeline_for_the_same_symbol_is_refused() -> None:
    def body(name: str, created: str, symbol: str = "BTCUSDT") -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"symbol": symbol},
        }

    first, second = body("a", "2026-01-01T00:00:00Z"), body("b", "2026-01-02T00:00:00Z")
    assert symbol_conflicts(first, [first, second]) == []
    problems = symbol_conflicts(second, [first, second])
    assert problems and "already handled by CryptoPipeline a" in problems[0]
    assert symbol_conflicts(body("c", "2026-01-03T00:00:00Z", "ETHUSDT"), [first]) == []


def test_drift_ignores_server_defaults_and_others_but_sees_hand_edits() -> None:
    desired = {
        "kind": "Deployment",
        "metadata": {"name": "x", "labels": {"a": "1"}},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "image": "i:1", "resources": {"limits": {"memory": "1Gi"}}}
                    ]
                }
            },
        },
    }
    live: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "x", "labels": {"a": "1", "extra": "y"}, "uid": "u"},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "i:1",
                            "terminationMessagePath": "/dev/termination-log",
                            "resources": {"limits": {"memory": "1024Mi"}},
                        },
                        {"name": "sidecar", "image": "s"},
                    ]
                }
            },
        },
    }
    assert drift.drifted(desired, live) == []
    live["spec"]["replicas"] = 5
    assert drift.drifted(desired, live) == [".spec.replicas"]
    assert drift.drifted(desired, None) == ["(missing)"]


def test_the_committed_crd_is_the_generated_one() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate-crd"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_crd_has_status_printer_columns_and_bounded_strings() -> None:
    crd = crd_manifest()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["cpl"]
    assert crd["spec"]["names"]["categories"] == ["cryptopipe"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Symbol", "Ready", "Phase", "Model", "Last forecast", "Age"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["properties"]["intervals"]["maxItems"] > 0
    assert schema["spec"]["properties"]["symbol"]["maxLength"] > 0
    rules = [r["rule"] for r in schema["spec"]["x-kubernetes-validations"]]
    assert "self.symbol == oldSelf.symbol" in rules
    conditions = schema["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


@pytest.mark.parametrize(
    ("api_key", "token"),
    [
        ({"authorization": "Bearer abc.def"}, "abc.def"),  # a kubeconfig
        ({"authorization": "bearer abc.def"}, "abc.def"),  # load_incluster_config
        ({"BearerToken": "abc.def"}, "abc.def"),
        ({"authorization": ""}, None),
        ({}, None),
    ],
)
def test_kopf_logs_in_with_the_bare_token(api_key: dict[str, str], token: str | None) -> None:
    assert bearer_token(api_key) == token


def test_a_resubmission_after_a_spec_change_is_named_as_such() -> None:
    for state in ("INVALIDATING", "PENDING_RERUN"):
        app = {"status": {"applicationState": {"state": state}}}
        cond = by_type(status.compute(healthy(spark_application=app), None, "T"))[
            "AggregatorRunning"
        ]
        assert (cond["status"], cond["reason"]) == ("False", "Resubmitting")
        assert "checkpoint" in cond["message"]
