"""The builders' meaning: names, owners, labels, images, arguments, resources, checkpoints."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_dashboard.config import parse as parse_dashboard_flags
from cryptopipe_jobs.aggregate.main import build_parser as aggregate_parser
from cryptopipe_jobs.predict.main import build_parser as predict_parser
from cryptopipe_jobs.producer.main import build_parser as producer_parser
from cryptopipe_jobs.train.main import build_parser as train_parser
from cryptopipe_operator import children
from cryptopipe_operator.children import aggregator, configmap, kafka_topics, training
from cryptopipe_operator.children.common import CONFIG_HASH, MAX_CHILD_NAME, Pipeline
from cryptopipe_operator.config import Dashboard, config_from_mapping
from cryptopipe_schemas.crd import MAX_NAME
from cryptopipe_schemas.spec import load_spec_file, spec_from_document, to_mapping
from operator_support import CONFIG, assert_restricted_and_read_only, pipeline, pod_specs

pytestmark = pytest.mark.unit
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def by_kind(objs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objs:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def test_every_child_is_labelled_namespaced_and_named_after_the_pipeline() -> None:
    for obj in children.desired(pipeline(), CONFIG):
        meta = obj["metadata"]
        assert meta["namespace"] == "team"
        assert meta["name"].startswith("btc-")
        assert meta["labels"]["cryptopipe.io/pipeline"] == "btc"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "cryptopipe-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "btc"
        assert "ownerReferences" not in meta  # the handler adopts; builders stay pure


LONGEST_NAME = "long-name-" * 6 + "abc"  # 63 characters, the most the CRD accepts


def test_the_longest_pipeline_name_gives_children_names_that_fit_and_stay_distinct() -> None:
    assert len(LONGEST_NAME) == MAX_NAME
    objs = children.desired(pipeline(name=LONGEST_NAME), CONFIG)
    names = [obj["metadata"]["name"] for obj in objs]
    assert all(len(name) <= MAX_CHILD_NAME for name in names), names
    assert all(re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) for name in names), names
    kinds_and_names = [(obj["kind"], obj["metadata"]["name"]) for obj in objs]
    assert len(set(kinds_and_names)) == len(kinds_and_names)  # a Service shares its Deployment's
    # Cut names keep their kind's suffix and a hash of the whole name, so two long names that
    # share their first characters do not collide.
    assert aggregator.name(pipeline(name=LONGEST_NAME)).endswith("-aggregator")
    twin = LONGEST_NAME[:-1] + "x"
    assert aggregator.name(pipeline(name=twin)) != aggregator.name(pipeline(name=LONGEST_NAME))
    # Short names are not touched.
    assert aggregator.name(pipeline(name="btc")) == "btc-aggregator"


def test_pods_mount_the_rendered_spec_and_use_the_platform_images_and_scheduling() -> None:
    objs = by_kind(children.desired(pipeline(), CONFIG))
    images = {
        c["name"]: c["image"]
        for obj in objs["Deployment"] + objs["Job"] + objs["CronJob"]
        for spec in pod_specs(obj)
        for c in spec["containers"]
    }
    assert images == {
        "producer": "reg/producer:1",
        "predictor": "reg/trainer:1",
        "trainer": "reg/trainer:1",
        "dashboard": "reg/dashboard:1",
    }
    for obj in objs["Deployment"] + objs["Job"] + objs["CronJob"]:
        for spec in pod_specs(obj):
            assert spec["nodeSelector"] == {"type": "kwok"}
            assert spec["tolerations"][0]["key"] == "kwok.x-k8s.io/node"
            assert spec["volumes"] == [
                {"name": "pipeline", "configMap": {"name": "btc-config"}},
                {"name": "tmp", "emptyDir": {}},
            ]
            container = spec["containers"][0]
            # The dashboard takes its settings as flags (after streamlit's `--`), not the spec.
            assert "--spec" in container["args"] or container["name"] == "dashboard"
            assert_restricted_and_read_only(spec, container)


def test_a_replay_producer_stays_up_after_the_replay() -> None:
    replaying = pipeline({"source": {"kind": "replay", "replay": {"data": "embedded"}}})
    deployment = by_kind(children.desired(replaying, CONFIG))["Deployment"][0]
    assert "--idle-after-replay" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_configmap_round_trips_through_the_jobs_spec_loader(tmp_path: Path) -> None:
    p = pipeline({"intervals": ["1m", "1h"], "sinks": {"hdfs": {"path": "/data"}}})
    cm = configmap.build(p, CONFIG)
    path = tmp_path / "pipeline.yaml"
    path.write_text(cm["data"]["pipeline.yaml"])
    assert load_spec_file(str(path)) == p.spec
    assert yaml.safe_load(cm["data"]["platform.yaml"])["kafkaBootstrapServers"] == "kafka:9092"


def test_producer_arguments_probes_resources_and_single_instance() -> None:
    p = pipeline({"resources": {"producer": {"cpu": "300m", "memory": "384Mi"}}})
    deployment = by_kind(children.desired(p, CONFIG))["Deployment"][0]
    assert deployment["metadata"]["name"] == "btc-producer"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["cryptopipe-producer"]
    args = container["args"]
    assert args[args.index("--spec") + 1] == "/etc/cryptopipe/pipeline.yaml"
    assert args[args.index("--bootstrap-servers") + 1] == "kafka:9092"
    assert "--idle-after-replay" not in args  # a live stream never finishes
    assert container["resources"] == {
        "requests": {"cpu": "300m", "memory": "384Mi"},
        "limits": {"memory": "384Mi"},
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    service = next(
        o for o in children.desired(p, CONFIG) if o["metadata"]["name"] == "btc-producer-metrics"
    )
    assert service["spec"]["ports"][0]["port"] == 9108
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_kafka_topics_follow_the_topic_contract() -> None:
    objs = kafka_topics.build(
        pipeline(
            {
                "intervals": ["1m", "5m"],
                "model": {"interval": "5m"},
                "sinks": {"kafka": {"partitions": 3}},
            }
        ),
        CONFIG,
    )
    assert {o["spec"]["topicName"] for o in objs} == {
        "trades.btcusdt",
        "candles.1m.btcusdt",
        "candles.5m.btcusdt",
        "forecasts.btcusdt",
    }
    assert all(o["metadata"]["labels"]["strimzi.io/cluster"] == "main" for o in objs)
    assert all(o["spec"]["partitions"] == 3 for o in objs)
    external = config_from_mapping({"kafka": {"mode": "external"}})
    assert kafka_topics.build(pipeline(), external) == []


def test_kafka_topics_keep_what_the_spec_says() -> None:
    def retention(spec: dict[str, object]) -> dict[str, object]:
        objs = kafka_topics.build(pipeline(spec), CONFIG)
        return {o["spec"]["topicName"]: o["spec"]["config"]["retention.ms"] for o in objs}

    assert retention({}) == {
        "trades.btcusdt": 7 * 86_400_000,
        "candles.1m.btcusdt": -1,
        "candles.5m.btcusdt": -1,
        "candles.1h.btcusdt": -1,
        "forecasts.btcusdt": -1,
    }
    shorter = retention({"retention": {"trades": "12h", "candles": "90d", "forecasts": "30d"}})
    assert shorter["trades.btcusdt"] == 12 * 3_600_000
    assert shorter["candles.1h.btcusdt"] == 90 * 86_400_000
    assert shorter["forecasts.btcusdt"] == 30 * 86_400_000


def test_spark_application_checkpoints_on_hdfs_by_identity_not_by_spec() -> None:
    p = pipeline()
    app = aggregator.build(p, CONFIG)
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    location = "hdfs://nn:8020/cryptopipe/checkpoints/team/btc"
    # Set once, by the job's --checkpoint: not in sparkConf too.
    assert "spark.sql.streaming.checkpointLocation" not in app["spec"]["sparkConf"]
    args = app["spec"]["arguments"]
    assert args[args.index("--checkpoint") + 1] == location
    assert app["spec"]["driver"]["memory"] == "1024m"  # 1Gi in Spark's notation
    assert app["spec"]["driver"]["coreRequest"] == "500m"
    assert app["spec"]["driver"]["cores"] == 1
    changed = aggregator.build(pipeline({"watermark": "1m"}), CONFIG)["spec"]["arguments"]
    assert changed[changed.index("--checkpoint") + 1] == location
    assert aggregator.spark_memory("512Mi") == "512m"
    assert aggregator.spark_cores("2500m") == 3


def test_spark_pods_get_the_spec_volume_security_and_scheduling_from_pod_templates() -> None:
    app = aggregator.build(pipeline(), CONFIG)
    assert "volumes" not in app["spec"]  # the webhook would add it a second time
    for role, container_name in (
        ("driver", "spark-kubernetes-driver"),
        ("executor", "spark-kubernetes-executor"),
    ):
        part = app["spec"][role]
        assert not {"volumeMounts", "securityContext", "nodeSelector", "tolerations"} & set(part)
        template = part["template"]["spec"]
        assert template["volumes"] == [
            {"name": "pipeline", "configMap": {"name": "btc-config"}},
            {"name": "tmp", "emptyDir": {}},
        ]
        (container,) = template["containers"]
        assert container["name"] == container_name
        assert container["volumeMounts"][0]["mountPath"] == "/etc/cryptopipe"
        assert_restricted_and_read_only(template, container)
        assert template["nodeSelector"] == {"type": "kwok"}
        assert part["labels"]["cryptopipe.io/pipeline"] == "btc"


def test_a_sheets_change_rolls_only_the_aggregator() -> None:
    before = pipeline()
    after = pipeline(
        {"sinks": {"sheets": {"enabled": True, "spreadsheetId": "x", "secretRef": {"name": "key"}}}}
    )

    def hashes(p: Pipeline) -> dict[str, str]:
        out = {}
        for obj in children.desired(p, CONFIG):
            if obj["kind"] == "Deployment":
                out[obj["metadata"]["name"]] = obj["spec"]["template"]["metadata"]["annotations"][
                    CONFIG_HASH
                ]
            if obj["kind"] == "SparkApplication":
                out[obj["metadata"]["name"]] = obj["metadata"]["annotations"][CONFIG_HASH]
        return out

    old, new = hashes(before), hashes(after)
    assert [name for name in old if old[name] != new[name]] == ["btc-aggregator"]
    assert training.job_name(before) == training.job_name(after)


def test_model_change_starts_a_new_training_job_and_keeps_the_schedule() -> None:
    before, after = pipeline(), pipeline({"model": {"units": 64, "schedule": "0 1 * * *"}})
    assert training.job_name(before) != training.job_name(after)
    cron = training.build_cronjob(after, CONFIG)
    assert cron["spec"]["schedule"] == "0 1 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = training.build_job(after, CONFIG)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--registry") + 1] == "hdfs://nn:8020/cryptopipe/models/team/btc"


def test_dashboard_ingress_serves_tls_and_carries_the_platforms_annotations() -> None:
    auth = {
        "nginx.ingress.kubernetes.io/auth-url": "https://oauth2.example.org/oauth2/auth",
        "nginx.ingress.kubernetes.io/auth-signin": "https://oauth2.example.org/oauth2/start",
    }
    config = dataclasses.replace(CONFIG, dashboard=Dashboard(ingress_annotations=auth))
    spec = {"dashboard": {"host": "btc.example.org", "tlsSecret": "btc-example-org-tls"}}
    (ingress,) = by_kind(children.desired(pipeline(spec), config))["Ingress"]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["btc.example.org"], "secretName": "btc-example-org-tls"}
    ]
    assert ingress["metadata"]["annotations"] == auth
    (plain,) = by_kind(children.desired(pipeline({"dashboard": {"host": "b.example"}}), CONFIG))[
        "Ingress"
    ]
    assert "tls" not in plain["spec"] and "annotations" not in plain["metadata"]


def test_the_readmes_dashboard_behind_tls_and_a_login_renders_as_it_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in readme.split("```yaml")[1:] if "ingressAnnotations" in b)
    pipeline_part, values = yaml.safe_load_all(block.split("```")[0])
    platform = values["platform"]
    config = dataclasses.replace(
        CONFIG, dashboard=Dashboard(ingress_annotations=platform["dashboard"]["ingressAnnotations"])
    )
    (ingress,) = by_kind(children.desired(pipeline(pipeline_part["spec"]), config))["Ingress"]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["btcusdt.example.org"], "secretName": "btcusdt-example-org-tls"}
    ]
    assert "nginx.ingress.kubernetes.io/auth-url" in ingress["metadata"]["annotations"]


def test_suspend_scales_to_zero_and_drops_only_the_spark_application() -> None:
    running = by_kind(children.desired(pipeline(), CONFIG))
    suspended = by_kind(children.desired(pipeline({"suspend": True}), CONFIG))
    assert "SparkApplication" in running and "SparkApplication" not in suspended
    assert all(d["spec"]["replicas"] == 0 for d in suspended["Deployment"])
    assert all(d["spec"]["replicas"] == 1 for d in running["Deployment"])
    assert suspended["CronJob"][0]["spec"]["suspend"] is True
    assert suspended["Job"][0]["spec"]["suspend"] is True
    assert len(suspended["KafkaTopic"]) == len(running["KafkaTopic"])  # data stays


def test_dashboard_children_follow_the_spec() -> None:
    with_host = by_kind(
        children.desired(pipeline({"dashboard": {"host": "btc.example.org"}}), CONFIG)
    )
    ingress = with_host["Ingress"][0]
    assert ingress["spec"]["rules"][0]["host"] == "btc.example.org"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "btc-dashboard"
    assert "Ingress" not in by_kind(children.desired(pipeline(), CONFIG))
    disabled = children.desired(pipeline({"dashboard": {"enabled": False}}), CONFIG)
    assert not [o for o in disabled if "dashboard" in o["metadata"]["name"]]


def containers_by_name(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        container["name"]: container
        for obj in objs
        for spec in pod_specs(obj)
        for container in spec["containers"]
    }


def test_every_entry_point_accepts_the_arguments_its_builder_passes() -> None:
    objs = children.desired(pipeline({"dashboard": {"enabled": True}}), CONFIG)
    containers = containers_by_name(objs)
    parsers = {
        "producer": ("cryptopipe-producer", producer_parser),
        "trainer": ("cryptopipe-train", train_parser),
        "predictor": ("cryptopipe-predict", predict_parser),
    }
    for name, (command, parser) in parsers.items():
        assert containers[name]["command"] == [command]
        # argparse exits on an unknown or missing argument
        parser().parse_args(containers[name]["args"])
    (app,) = by_kind(objs)["SparkApplication"]
    aggregate_parser().parse_args(app["spec"]["arguments"])
    predictor = containers["predictor"]["args"]
    assert predictor[predictor.index("--webhdfs-url") + 1] == CONFIG.storage.webhdfs_url
    dashboard = containers["dashboard"]
    assert dashboard["command"] == ["streamlit"]
    args = dashboard["args"]
    assert args[:2] == ["run", "/opt/cryptopipe/dashboard/app.py"]
    settings = parse_dashboard_flags(args[args.index("--") + 1 :])
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.symbols == ("BTCUSDT",)
    assert settings.registry == f"{CONFIG.storage.webhdfs_url}/cryptopipe/models/team/btc"
    # Without the platform's ServiceAccount: no Kubernetes access, no namespace to list.
    assert settings.namespace is None
    assert "serviceAccountName" not in dashboard_deployment(objs)["spec"]["template"]["spec"]


REGISTRY_URL = "http://cryptopipe-schema-registry.data.svc:8080/apis/ccompat/v7"


def kafka_client_options(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """What each Kafka client of a pipeline parses from the arguments its builder passes."""
    containers = containers_by_name(objs)
    dashboard = containers["dashboard"]["args"]
    (app,) = by_kind(objs)["SparkApplication"]
    return {
        "producer": producer_parser().parse_args(containers["producer"]["args"]),
        "predictor": predict_parser().parse_args(containers["predictor"]["args"]),
        "aggregator": aggregate_parser().parse_args(app["spec"]["arguments"]),
        "dashboard": parse_dashboard_flags(dashboard[dashboard.index("--") + 1 :]),
    }


def test_every_kafka_client_gets_the_platforms_schema_registry_or_none() -> None:
    spec = pipeline({"dashboard": {"enabled": True}})
    without = kafka_client_options(children.desired(spec, CONFIG))
    assert {name: o.schema_registry_url for name, o in without.items()} == dict.fromkeys(
        without, None
    )
    config = dataclasses.replace(
        CONFIG, kafka=dataclasses.replace(CONFIG.kafka, schema_registry_url=REGISTRY_URL)
    )
    given = kafka_client_options(children.desired(spec, config))
    assert {name: o.schema_registry_url for name, o in given.items()} == dict.fromkeys(
        given, REGISTRY_URL
    )


def test_every_kafka_client_and_only_they_get_the_platforms_kafka_credentials() -> None:
    config = dataclasses.replace(
        CONFIG,
        kafka=dataclasses.replace(
            CONFIG.kafka,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            auth_secret="kafka-client",
        ),
    )
    objs = children.desired(pipeline({"dashboard": {"enabled": True}}), config)
    (app,) = by_kind(objs)["SparkApplication"]
    spark = {
        role: app["spec"][role]["template"]["spec"]["containers"][0]
        for role in ("driver", "executor")
    }
    clients = {**containers_by_name(objs), **spark}
    for name in ("producer", "predictor", "dashboard", "driver", "executor"):
        env = {e["name"]: e for e in clients[name]["env"]}
        assert env["CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
        assert env["CRYPTOPIPE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["CRYPTOPIPE_KAFKA_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": "kafka-client", "key": "password"}
        }
        ca = env["CRYPTOPIPE_KAFKA_CA_FILE"]["value"]
        mounts = {m["mountPath"] for m in clients[name]["volumeMounts"]}
        assert ca.rsplit("/", 1)[0] in mounts, name
    trainer = containers_by_name(objs)["trainer"]  # reads HDFS and the registry, not Kafka
    assert "env" not in trainer or not any(
        e["name"].startswith("CRYPTOPIPE_KAFKA_") for e in trainer["env"]
    )


def test_with_managed_kafka_users_the_entry_points_take_the_ids_their_acls_name() -> None:
    kafka = dataclasses.replace(
        CONFIG.kafka,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        auth_secret="kafka-client",
        manage_users=True,
    )
    objs = children.desired(
        pipeline({"dashboard": {"enabled": True}}), dataclasses.replace(CONFIG, kafka=kafka)
    )
    options = kafka_client_options(objs)
    assert options["producer"].transactional_id == "cryptopipe-producer.team.btc"
    assert options["predictor"].group_id == "cryptopipe-predict.team.btc"


def test_sasl_without_a_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"SASL_SSL needs saslMechanism .* and authSecret"):
        config_from_mapping({"kafka": {"securityProtocol": "SASL_SSL"}})


def dashboard_deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [
        d for d in by_kind(objs)["Deployment"] if d["metadata"]["name"].endswith("-dashboard")
    ]
    return found


def test_the_dashboard_lists_its_namespaces_pipelines_as_the_platforms_account() -> None:
    config = dataclasses.replace(
        CONFIG, dashboard=Dashboard(service_account="cryptopipe-dashboard")
    )
    objs = children.desired(pipeline({"dashboard": {"enabled": True}}), config)
    args = containers_by_name(objs)["dashboard"]["args"]
    assert parse_dashboard_flags(args[args.index("--") + 1 :]).namespace == "team"
    deployment = dashboard_deployment(objs)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "cryptopipe-dashboard"
    for other in by_kind(objs)["Deployment"]:
        if other is not deployment:  # no other pod needs the API server
            assert "serviceAccountName" not in other["spec"]["template"]["spec"]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_builds(example: Path) -> None:
    document = yaml.safe_load(example.read_text())
    spec = spec_from_document(document)
    objs = children.desired(Pipeline(document["metadata"]["name"], "ns", spec), CONFIG)
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names))
    assert to_mapping(spec)["symbol"] == document["spec"]["symbol"]
