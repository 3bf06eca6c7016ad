"""A pool's membership (pools) and its shared children (children.pool), from specs alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cryptopipe_dashboard.config import parse as parse_dashboard_flags
from cryptopipe_jobs.aggregate.main import build_parser as aggregate_parser
from cryptopipe_jobs.predict.main import build_parser as predict_parser
from cryptopipe_jobs.producer.main import build_parser as producer_parser
from cryptopipe_jobs.spec_directory import read_spec_folder
from cryptopipe_operator import children, pools
from cryptopipe_operator.children import pool as pool_children
from cryptopipe_operator.children.common import POOL_LABEL, POOL_SPEC_DIR, Pool
from cryptopipe_operator.reconcile import Outcome, admit_training
from cryptopipe_schemas.spec import parse_spec
from operator_support import CONFIG, assert_restricted_and_read_only, pod_specs

SHARED = {"isolation": "shared", "pool": "majors"}


def body(name: str, symbol: str, created: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {"symbol": symbol, **SHARED, **spec},
    }


def view(*bodies: dict[str, Any]) -> pools.PoolView:
    found = pools.pool_view("team", "majors", bodies, {})
    assert found is not None
    return found


def test_the_pool_is_its_shared_pipelines_and_takes_its_oldest_ones_settings() -> None:
    result = view(
        body("eth", "ETHUSDT", "2026-01-02T00:00:00Z"),
        body("btc", "BTCUSDT", "2026-01-01T00:00:00Z", sinks={"kafka": {"partitions": 3}}),
        body("solo", "SOLUSDT", "2026-01-01T00:00:00Z", isolation="dedicated"),
        body("other", "XRPUSDT", "2026-01-01T00:00:00Z", pool="minors"),
        body("paused", "ADAUSDT", "2026-01-03T00:00:00Z", suspend=True,
             sinks={"kafka": {"partitions": 3}}),
    )  # fmt: skip
    # eth's sinks differ from btc's, the oldest: it is told, and not served.
    assert list(result.problems) == ["eth"]
    assert "spec.sinks" in result.problems["eth"][0] and "btc" in result.problems["eth"][0]
    assert [m.name for m in result.pool.members] == ["btc"]  # paused owns but is not served
    assert {m.name for m in result.owners} == {"btc", "paused"}
    assert result.pool.spec.sinks.kafka.partitions == 3


def test_a_mixed_source_kind_is_refused_and_owners_are_never_controllers() -> None:
    result = view(
        body("btc", "BTCUSDT", "2026-01-01T00:00:00Z"),
        body("eth", "ETHUSDT", "2026-01-02T00:00:00Z", source={"kind": "replay"}),
    )
    assert "spec.source.kind: replay differs from binance" in result.problems["eth"][0]
    references = pools.owner_references(result.owners)
    assert [(r["name"], r["controller"], r["blockOwnerDeletion"]) for r in references] == [
        ("btc", False, False)
    ]


def test_nobody_asking_for_a_pool_means_no_pool() -> None:
    dedicated = body("btc", "BTCUSDT", "2026-01-01T00:00:00Z", isolation="dedicated")
    assert pools.pool_view("team", "majors", [dedicated], {}) is None


def majors(*symbols: str) -> Pool:
    bodies = [body(s.lower(), s, f"2026-01-0{i + 1}T00:00:00Z") for i, s in enumerate(symbols)]
    return view(*bodies).pool


def by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each kind's object; of Deployments and Services, the producer's."""
    out: dict[str, dict[str, Any]] = {}
    for obj in objs:
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        if obj["kind"] in ("Deployment", "Service") and component != "producer":
            out[f"{obj['kind']}/{component}"] = obj
        else:
            out[obj["kind"]] = obj
    return out


def test_shared_pipelines_have_no_producer_or_aggregator_of_their_own() -> None:
    (member,) = majors("BTCUSDT").members
    kinds = [obj["kind"] for obj in children.desired(member, CONFIG)]
    assert "SparkApplication" not in kinds
    names = [obj["metadata"]["name"] for obj in children.desired(member, CONFIG)]
    assert not any(n.endswith(("-producer", "-predictor")) for n in names), names
    assert "btcusdt-retrain" in names and "btcusdt-dashboard" not in names


def test_pool_children_are_named_apart_from_any_pipeline_and_labelled_by_pool() -> None:
    objs = pool_children.desired(majors("BTCUSDT", "ETHUSDT"), CONFIG)
    names = sorted(obj["metadata"]["name"] for obj in objs)
    assert names == [
        "majors-aggregator-pool",
        "majors-dashboard-pool",  # Deployment
        "majors-dashboard-pool",  # Service
        "majors-members-pool",
        "majors-predictor-metrics-pool",
        "majors-predictor-pool",
        "majors-producer-metrics-pool",
        "majors-producer-pool",
    ]
    for obj in objs:
        assert obj["metadata"]["labels"][POOL_LABEL] == "majors"
        assert "cryptopipe.io/pipeline" not in obj["metadata"]["labels"]


def test_members_render_to_files_the_jobs_read_back(tmp_path: Path) -> None:
    members = by_kind(pool_children.desired(majors("BTCUSDT", "ETHUSDT"), CONFIG))["ConfigMap"]
    for key, text in members["data"].items():
        (tmp_path / key).write_text(text)
    assert [s.symbol for s in read_spec_folder(tmp_path).specs] == ["BTCUSDT", "ETHUSDT"]


def test_the_producer_rolls_on_members_and_the_aggregator_and_predictor_never_do() -> None:
    two = by_kind(pool_children.desired(majors("BTCUSDT", "ETHUSDT"), CONFIG))
    three = by_kind(pool_children.desired(majors("BTCUSDT", "ETHUSDT", "SOLUSDT"), CONFIG))
    assert two["Deployment/predictor"] == three["Deployment/predictor"]

    def hash_of(deployment: dict[str, Any]) -> Any:
        return deployment["spec"]["template"]["metadata"]["annotations"]

    assert hash_of(two["Deployment"]) != hash_of(three["Deployment"])
    assert two["SparkApplication"] == three["SparkApplication"]  # no resubmission
    assert two["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


def test_pool_entry_points_accept_their_arguments_and_mount_the_members() -> None:
    objs = by_kind(pool_children.desired(majors("BTCUSDT"), CONFIG))
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    (producer,) = pod["containers"]
    producer_parser().parse_args(producer["args"])
    assert producer["volumeMounts"][0]["mountPath"] == POOL_SPEC_DIR
    assert pod["volumes"][0]["configMap"]["name"] == "majors-members-pool"
    predictor = objs["Deployment/predictor"]["spec"]["template"]["spec"]["containers"][0]
    predict_options = predict_parser().parse_args(predictor["args"])
    assert str(predict_options.spec_dir) == POOL_SPEC_DIR
    assert predict_options.registry_root == "hdfs://nn:8020"
    assert predict_options.group_id == "cryptopipe-predict.pool.team.majors"
    assert predictor["volumeMounts"][0]["mountPath"] == POOL_SPEC_DIR
    app = objs["SparkApplication"]["spec"]
    options = aggregate_parser().parse_args(app["arguments"])
    assert str(options.spec_dir) == POOL_SPEC_DIR
    assert options.checkpoint == "hdfs://nn:8020/cryptopipe/checkpoints/team/pool-majors"
    driver = app["driver"]["template"]["spec"]
    assert driver["containers"][0]["volumeMounts"][0]["mountPath"] == POOL_SPEC_DIR
    assert app["driver"]["memory"] == "1024m" and app["driver"]["coreRequest"] == "500m"


def test_the_pools_kafka_clients_get_the_platforms_schema_registry() -> None:
    url = "http://registry:8080/apis/ccompat/v7"
    config = dataclasses.replace(
        CONFIG, kafka=dataclasses.replace(CONFIG.kafka, schema_registry_url=url)
    )
    objs = by_kind(pool_children.desired(majors("BTCUSDT"), config))
    producer = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    predictor = objs["Deployment/predictor"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert producer_parser().parse_args(producer).schema_registry_url == url
    assert predict_parser().parse_args(predictor).schema_registry_url == url
    app = objs["SparkApplication"]["spec"]["arguments"]
    assert aggregate_parser().parse_args(app).schema_registry_url == url


def test_a_pool_without_a_served_member_has_no_children() -> None:
    paused = body("btc", "BTCUSDT", "2026-01-01T00:00:00Z", suspend=True)
    assert pool_children.desired(view(paused).pool, CONFIG) == []


def training_job(
    name: str, pipeline: str, created: str, *, suspend: bool, done: bool = False
) -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if done else []
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"cryptopipe.io/pipeline": pipeline},
        },
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions},
    }


class RecordingKube:
    """The two calls admission makes: a list of Jobs, and merge patches (recorded)."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs
        self.patched: list[str] = []

    def list(self, path: str, selector: str) -> list[dict[str, Any]]:
        assert path.endswith("/jobs") and "component=trainer" in selector
        return self.jobs

    def request(self, method: str, path: str, **_: Any) -> None:
        assert method == "PATCH"
        self.patched.append(path.rsplit("/", 1)[1])


def test_the_pool_admits_queued_trainings_oldest_first_up_to_its_limit() -> None:
    result = view(
        *(body(s.lower(), s, f"2026-01-0{i + 1}T00:00:00Z") for i, s in enumerate(
            ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT"]
        ))
    )  # fmt: skip
    kube = RecordingKube(
        [
            training_job("btc-train-1", "btcusdt", "T1", suspend=False),  # running
            training_job("eth-train-1", "ethusdt", "T1", suspend=False, done=True),  # finished
            training_job("sol-train-1", "solusdt", "T3", suspend=True),
            training_job("ada-train-1", "adausdt", "T2", suspend=True),
            training_job("xrp-train-1", "other", "T0", suspend=True),  # not this pool's
        ]
    )
    events: list[str] = []
    admit_training(result, kube, CONFIG, lambda *e: events.append(e[1]), Outcome())  # type: ignore[arg-type]
    # Concurrency 2: one runs, so one more, the oldest queued of this pool's.
    assert kube.patched == ["ada-train-1"] and events == ["TrainingAdmitted"]


def test_shared_training_jobs_start_queued_and_dedicated_ones_do_not() -> None:
    (member,) = majors("BTCUSDT").members
    by = {obj["kind"]: obj for obj in children.desired(member, CONFIG)}
    assert by["Job"]["spec"]["suspend"] is True
    assert by["CronJob"]["spec"]["jobTemplate"]["spec"]["suspend"] is True
    assert by["CronJob"]["spec"]["suspend"] is False  # the schedule itself runs
    dedicated = children.desired(
        children.Pipeline("btc", "team", parse_spec({"symbol": "BTCUSDT"})), CONFIG
    )
    job = next(obj for obj in dedicated if obj["kind"] == "Job")
    cron = next(obj for obj in dedicated if obj["kind"] == "CronJob")
    assert job["spec"]["suspend"] is False
    assert "suspend" not in cron["spec"]["jobTemplate"]["spec"]


def test_the_pool_dashboard_lists_every_member_that_asks_with_its_own_registry() -> None:
    synthetic = {"kind": "synthetic"}  # the pool's source kind: every member's
    found = view(
        body("btc", "BTCUSDT", "2026-01-01T00:00:00Z", source=synthetic,
             dashboard={"host": "btc.example"}),
        body("eth", "ETHUSDT", "2026-01-02T00:00:00Z", source=synthetic, intervals=["1m"],
             model={"interval": "1m"}, dashboard={"host": "eth.example", "tlsSecret": "eth-tls"}),
        body("syn", "SYNAUSDT", "2026-01-03T00:00:00Z", source=synthetic),
        body("off", "XRPUSDT", "2026-01-04T00:00:00Z", source=synthetic,
             dashboard={"enabled": False}),
    )  # fmt: skip
    objs = pool_children.desired(found.pool, CONFIG)
    deployment = by_kind(objs)["Deployment/dashboard"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    flags = container["args"][container["args"].index("--") + 1 :]
    config = parse_dashboard_flags(flags)
    assert config.symbols == ("BTCUSDT", "ETHUSDT", "SYNAUSDT")  # not XRPUSDT: it asked for none
    assert config.intervals == ("1m", "5m", "1h")
    assert config.synthetic_symbols == config.symbols  # each labelled as not market data
    assert config.registries["ETHUSDT"].endswith("/cryptopipe/models/team/eth")
    ingress = by_kind(objs)["Ingress"]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["btc.example", "eth.example"]
    assert ingress["spec"]["tls"] == [{"hosts": ["eth.example"], "secretName": "eth-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "majors-dashboard-pool"


def test_every_pod_of_a_pool_or_a_pipeline_is_restricted_with_a_read_only_root() -> None:
    dedicated = children.desired(
        children.Pipeline("solo", "team", parse_spec({"symbol": "SOLUSDT"})), CONFIG
    )
    pods = [
        (spec, container)
        for obj in [*pool_children.desired(majors("BTCUSDT", "ETHUSDT"), CONFIG), *dedicated]
        for spec in pod_specs(obj)
        for container in spec["containers"]
    ]
    # The pool's producer, Spark driver and executor, predictor and dashboard; the pipeline's
    # same five, its training Job and its retraining CronJob.
    assert len(pods) == 12
    for spec, container in pods:
        assert_restricted_and_read_only(spec, container)
