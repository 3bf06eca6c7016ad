"""The platform chart's templates: lint, kubeconform against real schemas, and their meaning.

helm and kubeconform are the test bed's builds (installed, not started: no API server here).
The built-in kinds' schemas come from PyPI's kubernetes-validate, the Strimzi and
spark-operator CRDs' schemas from their published artifacts (cryptopipe_testbed.upstream_crds).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import OPERATOR_CHART, PLATFORM_CHART, render_docs, render_text, run_helm

from cryptopipe_testbed import kubeconform, upstream_crds
from cryptopipe_testbed.components.kube import Kubernetes, helm_path

pytestmark = pytest.mark.unit
CHART = PLATFORM_CHART
VALUES_FILES = ["values.yaml", "values-kind.yaml", "values-minikube.yaml"]
EXTERNAL = [
    "--set",
    "kafka.provider=external",
    "--set",
    "kafka.external.bootstrapServers=broker-1:9093\\,broker-2:9093",
    "--set",
    "kafka.external.securityProtocol=SASL_SSL",
    "--set",
    "kafka.external.authSecret=kafka-client",
]
WORKLOADS = ("Deployment", "StatefulSet", "Pod")
EXTERNAL_REGISTRY = [
    "--set",
    "schemaRegistry.provider=external",
    "--set",
    "schemaRegistry.external.url=https://sr.example:8081",
]


@pytest.fixture(scope="module")
def helm() -> str:
    Kubernetes().install()  # cached builds of helm and kubeconform; starts nothing
    return str(helm_path())


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    return render_docs(helm, *args, chart=CHART)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def schemas(helm: str) -> Iterator[tuple[Path, Path]]:
    crds = [yaml.safe_load(path.read_text()) for path in upstream_crds.crd_files()]
    yield (
        kubeconform.builtin_schemas(),
        kubeconform.write_crd_schemas(crds, upstream_crds.cache_dir().name),
    )


@pytest.mark.parametrize("values", VALUES_FILES)
def test_lint_strict(helm: str, values: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(CHART / values))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "extra"),
    [(name, []) for name in VALUES_FILES]
    + [
        ("values.yaml", EXTERNAL),
        ("values.yaml", ["--set", "kafka.strimzi.storage.type=ephemeral"]),
        ("values.yaml", ["--set", "networkPolicy.enabled=true"]),
    ],
)
def test_kubeconform_strict(
    helm: str, schemas: tuple[Path, Path], values: str, extra: list[str]
) -> None:
    manifests = render_text(helm, "-f", str(CHART / values), *extra)
    result = kubeconform.validate(manifests, *schemas, strict=True)
    assert result.returncode == 0 and not result.problems, result.problems or result.stderr
    assert result.summary["valid"] == len([d for d in yaml.safe_load_all(manifests) if d])
    assert result.summary["skipped"] == 0


def test_kubeconform_catches_what_it_should(helm: str, schemas: tuple[Path, Path]) -> None:
    """The schemas bite: an unknown field in a CRD and a mistyped field of a built-in kind."""
    docs = render(helm)
    kafka = one(docs, "Kafka", "cryptopipe")
    kafka["spec"]["kafka"]["listner"] = []
    metastore = one(docs, "Deployment", "cryptopipe-hive-metastore")
    metastore["spec"]["replicas"] = "one"
    result = kubeconform.validate(yaml.safe_dump_all([kafka, metastore]), *schemas, strict=True)
    assert result.returncode != 0
    problems = "\n".join(result.problems)
    assert "listner" in problems and "/spec/replicas" in problems, problems


def test_operator_chart_validates_too(helm: str, schemas: tuple[Path, Path]) -> None:
    manifests = render_text(helm, chart=OPERATOR_CHART)
    result = kubeconform.validate(manifests, *schemas, strict=True)
    assert result.returncode == 0 and not result.problems, result.problems or result.stderr


MANAGED_USERS = [
    "--set", "platform.kafka.mode=external",
    "--set", "platform.kafka.securityProtocol=SASL_SSL",
    "--set", "platform.kafka.saslMechanism=SCRAM-SHA-512",
    "--set", "platform.kafka.authSecret=kafka-client",
    "--set", "platform.kafka.manageUsers=true",
    "--set", "platform.kafka.adminSecret=kafka-admin",
]  # fmt: skip


def test_an_operator_managing_kafka_users_gets_its_admin_and_writes_secrets_only(
    helm: str, schemas: tuple[Path, Path]
) -> None:
    manifests = render_text(helm, *MANAGED_USERS, chart=OPERATOR_CHART)
    result = kubeconform.validate(manifests, *schemas, strict=True)
    assert result.returncode == 0 and not result.problems, result.problems or result.stderr
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for variable, key in (
        ("USERNAME", "username"),
        ("PASSWORD", "password"),
        ("USER_KEY", "user-key"),
    ):
        assert env[f"CRYPTOPIPE_KAFKA_{variable}"]["valueFrom"] == {
            "secretKeyRef": {"name": "kafka-admin", "key": key}
        }
    assert env["CRYPTOPIPE_KAFKA_CA_FILE"]["value"] == "/etc/cryptopipe-operator/kafka/ca.crt"
    secret_rules = [
        rule
        for role in by_kind(docs, "ClusterRole")
        for rule in role["rules"]
        if "secrets" in rule["resources"]
    ]
    assert secret_rules and all(rule["verbs"] == ["create", "patch"] for rule in secret_rules)
    plain = [d for d in yaml.safe_load_all(render_text(helm, chart=OPERATOR_CHART)) if d]
    assert not [
        rule
        for role in by_kind(plain, "ClusterRole")
        for rule in role["rules"]
        if "secrets" in rule["resources"]
    ]


def test_the_service_proxy_is_cluster_wide_only_for_an_operator_watching_every_namespace(
    helm: str,
) -> None:
    def proxied(*args: str) -> dict[tuple[str, str], list[str]]:
        docs = [d for d in yaml.safe_load_all(render_text(helm, *args, chart=OPERATOR_CHART)) if d]
        return {
            (doc["kind"], doc["metadata"].get("namespace", "")): rule["verbs"]
            for doc in docs
            if doc["kind"] in ("ClusterRole", "Role")
            for rule in doc["rules"]
            if "services/proxy" in rule["resources"]
        }

    assert proxied() == {("ClusterRole", ""): ["get"]}
    scoped = proxied("--set", "watchNamespaces={team-a,team-b}")
    assert scoped == {("Role", "team-a"): ["get"], ("Role", "team-b"): ["get"]}
    assert proxied("--set", "platform.freshness.enabled=false") == {}


def test_platform_services_accept_only_pipelines_the_operator_and_each_other(helm: str) -> None:
    assert not by_kind(render(helm), "NetworkPolicy")  # off by default
    docs = render(
        helm, "--set", "networkPolicy.enabled=true", "--set", "spark.namespaces={team-a,team-b}",
        "--set", "networkPolicy.operatorNamespace=ops",
        "--set", "networkPolicy.extraSources[0].namespaceSelector.matchLabels.name=monitoring",
    )  # fmt: skip
    platform = one(docs, "NetworkPolicy", "cryptopipe-platform-sources")
    selected = platform["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(selected) == [
        "hdfs-datanode",
        "hdfs-namenode",
        "hive-metastore",
        "schema-registry",
    ]
    assert platform["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = platform["spec"]["ingress"]
    assert "ports" not in rule  # any port, from these sources only
    namespaces = [
        peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        for peer in rule["from"]
    ]
    assert namespaces == ["team-a", "team-b", "ops", None, None]
    pods = [peer.get("podSelector", {}).get("matchLabels") for peer in rule["from"]]
    assert pods[:2] == [{"app.kubernetes.io/managed-by": "cryptopipe-operator"}] * 2
    assert pods[2] == {"app.kubernetes.io/name": "cryptopipe-operator"}
    assert pods[3] == {"app.kubernetes.io/instance": "rel"}  # the release's own pods
    assert rule["from"][4] == {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    postgres = one(docs, "NetworkPolicy", "cryptopipe-postgres-from-metastore")
    ((peer,),) = [r["from"] for r in postgres["spec"]["ingress"]]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "hive-metastore"
    (kafka,) = by_kind(docs, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["networkPolicyPeers"] == rule["from"]


def test_strimzi_kafka_is_kraft_with_one_dual_role_pool_and_the_topic_operator(helm: str) -> None:
    docs = render(helm, "-f", str(CHART / "values-kind.yaml"))
    kafka = one(docs, "Kafka", "cryptopipe")
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert "zookeeper" not in kafka["spec"]
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert (listener["port"], listener["type"], listener["tls"]) == (9092, "internal", False)
    config = kafka["spec"]["kafka"]["config"]
    assert config["offsets.topic.replication.factor"] == 1  # one replica on kind
    pool = one(docs, "KafkaNodePool", "cryptopipe-dual-role")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "cryptopipe"
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["spec"]["replicas"] == 1
    assert pool["spec"]["storage"]["type"] == "persistent-claim"
    assert pool["spec"]["resources"]["limits"]["memory"] == "768Mi"


def test_three_replicas_get_replicated_internal_topics(helm: str) -> None:
    config = one(render(helm, "--set", "kafka.strimzi.replicas=3"), "Kafka", "cryptopipe")["spec"][
        "kafka"
    ]["config"]
    assert config["offsets.topic.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2


def test_external_kafka_renders_no_strimzi_and_tells_the_operator(helm: str) -> None:
    docs = render(helm, *EXTERNAL)
    assert not [d for d in docs if d["apiVersion"].startswith("kafka.strimzi.io")]
    info = one(docs, "ConfigMap", "cryptopipe-platform")
    assert info["data"]["kafka-mode"] == "external"
    operator_values = yaml.safe_load(info["data"]["operator-values.yaml"])
    assert operator_values["platform"]["kafka"] == {
        "mode": "external",
        "bootstrapServers": "broker-1:9093,broker-2:9093",
        "cluster": "cryptopipe",
        "clusterNamespace": "team",
        "schemaRegistryUrl": "http://cryptopipe-schema-registry.team.svc:8080/apis/ccompat/v7",
        # The external Kafka's security reaches every pipeline client through the operator.
        "securityProtocol": "SASL_SSL",
        "saslMechanism": "PLAIN",
        "authSecret": "kafka-client",
    }
    test_pod = one(docs, "Pod", "cryptopipe-test-kafka")
    assert test_pod["spec"]["volumes"] == [
        {"name": "auth", "secret": {"secretName": "kafka-client"}}
    ]
    env = {e["name"]: e.get("value") for e in test_pod["spec"]["containers"][0]["env"]}
    assert env["SECURITY_PROTOCOL"] == "SASL_SSL"


def test_the_schema_registry_keeps_its_schemas_in_the_platforms_kafka(helm: str) -> None:
    docs = render(helm, *EXTERNAL)
    registry = one(docs, "Deployment", "cryptopipe-schema-registry")
    (container,) = registry["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["APICURIO_STORAGE_KIND"] == "kafkasql"
    assert env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] == "broker-1:9093,broker-2:9093"
    service = one(docs, "Service", "cryptopipe-schema-registry")
    assert service["spec"]["ports"][0]["port"] == 8080


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        (["--set", "schemaRegistry.provider=none"], ""),
        (EXTERNAL_REGISTRY, "https://sr.example:8081"),
    ],
    ids=["none", "external"],
)
def test_a_registry_run_elsewhere_or_none_renders_no_deployment(
    helm: str, settings: list[str], url: str
) -> None:
    docs = render(helm, *EXTERNAL, *settings)
    assert not [d for d in docs if d["metadata"]["name"] == "cryptopipe-schema-registry"]
    info = one(docs, "ConfigMap", "cryptopipe-platform")
    assert info["data"]["schema-registry-url"] == url
    operator_values = yaml.safe_load(info["data"]["operator-values.yaml"])
    assert operator_values["platform"]["kafka"]["schemaRegistryUrl"] == url


def test_an_external_registry_without_its_url_is_refused(helm: str) -> None:
    flags = [*EXTERNAL, "--set", "schemaRegistry.provider=external"]
    result = run_helm(helm, "template", "cp", str(CHART), *flags, check=False)
    assert result.returncode != 0
    assert "schemaRegistry.external.url is required" in result.stderr


def test_managed_kafka_users_reach_the_operator_and_need_an_admin(helm: str) -> None:
    scram = [*EXTERNAL, "--set", "kafka.external.saslMechanism=SCRAM-SHA-512"]
    managed = [*scram, "--set", "kafka.external.manageUsers=true"]
    refused = run_helm(helm, "template", "cp", str(CHART), *managed, check=False)
    assert refused.returncode != 0
    assert "kafka.external.adminSecret is required with manageUsers" in refused.stderr
    docs = render(helm, *managed, "--set", "kafka.external.adminSecret=kafka-admin")
    info = one(docs, "ConfigMap", "cryptopipe-platform")
    kafka = yaml.safe_load(info["data"]["operator-values.yaml"])["platform"]["kafka"]
    assert (kafka["manageUsers"], kafka["adminSecret"]) == (True, "kafka-admin")
    plain = yaml.safe_load(one(render(helm, *scram), "ConfigMap", "cryptopipe-platform")["data"][
        "operator-values.yaml"
    ])  # fmt: skip
    assert "manageUsers" not in plain["platform"]["kafka"]


def test_external_kafka_without_bootstrap_servers_is_refused(helm: str) -> None:
    result = run_helm(
        helm, "template", "rel", str(CHART), "--set", "kafka.provider=external", check=False
    )
    assert result.returncode != 0
    assert "kafka.external.bootstrapServers is required" in result.stderr


def test_operator_values_match_the_operator_charts_defaults(helm: str) -> None:
    """The platform's fixed names are what the operator chart expects out of the box."""
    info = one(render(helm), "ConfigMap", "cryptopipe-platform")
    platform = yaml.safe_load(info["data"]["operator-values.yaml"])["platform"]
    defaults = yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())["platform"]
    assert platform["storage"] == defaults["storage"]
    assert platform["spark"]["serviceAccount"] == defaults["spark"]["serviceAccount"]
    assert platform["kafka"]["bootstrapServers"] == defaults["kafka"]["bootstrapServers"]
    assert platform["kafka"]["cluster"] == defaults["kafka"]["cluster"]
    assert platform["kafka"]["mode"] == defaults["kafka"]["mode"] == "strimzi"
    docs = render(helm)
    for kind, name in [
        ("Service", "cryptopipe-hdfs-namenode"),
        ("Service", "cryptopipe-hive-metastore"),
        ("ServiceAccount", "cryptopipe-spark"),
        ("Kafka", "cryptopipe"),  # Strimzi names its bootstrap Service <cluster>-kafka-bootstrap
    ]:
        one(docs, kind, name)


def test_operator_chart_puts_every_image_under_one_registry(helm: str) -> None:
    docs = [
        d
        for d in yaml.safe_load_all(
            render_text(helm, "--set", "image.registry=reg.example:5000", chart=OPERATOR_CHART)
        )
        if d
    ]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "reg.example:5000/cryptopipe/operator:0.1.0"
    )
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    images = yaml.safe_load(config["data"]["platform.yaml"])["images"]
    assert images["producer"] == "reg.example:5000/cryptopipe/producer:0.1.0"
    assert images["pullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_container_has_resources_and_every_server_probes(helm: str, values: str) -> None:
    docs = render(helm, "-f", str(CHART / values))
    for doc in [d for d in docs if d["kind"] in WORKLOADS]:
        spec = pod_spec(doc)
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            assert container["resources"]["requests"]["memory"], where
            assert container["resources"]["limits"]["memory"], where
            if doc["kind"] != "Pod" and container in spec["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container, where


def test_namenode_is_ready_only_with_live_datanodes_out_of_safe_mode(helm: str) -> None:
    namenode = one(render(helm), "StatefulSet", "cryptopipe-hdfs-namenode")
    container = pod_spec(namenode)["containers"][0]
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "NumLiveDataNodes" in probe and '"Operational"' in probe
    # The image's entry point formats the name directory only while it holds no namespace.
    assert "command" not in container and container["args"] == ["namenode"]
    assert "initContainers" not in pod_spec(namenode)


def test_ports_follow_the_values_everywhere(helm: str) -> None:
    ports = [
        "hdfs.namenode.ports.rpc=28020", "hdfs.namenode.ports.http=29870",
        "hdfs.datanode.ports.data=29866", "hdfs.datanode.ports.http=29864",
        "hdfs.datanode.ports.ipc=29867", "hiveMetastore.port=29083",
    ]  # fmt: skip
    docs = render(helm, *[arg for port in ports for arg in ("--set", port)])
    text = yaml.safe_dump_all(docs)
    for default in ("8020", "9870", "9866", "9864", "9867", "9083"):
        assert not re.search(rf"\b{default}\b", text), default
    hadoop = one(docs, "ConfigMap", "cryptopipe-hadoop-conf")["data"]
    assert "hdfs://cryptopipe-hdfs-namenode:28020" in hadoop["core-site.xml"]
    assert "<value>0.0.0.0:29866</value>" in hadoop["hdfs-site.xml"]
    metastore = one(docs, "Deployment", "cryptopipe-hive-metastore")
    env = {e["name"]: e for e in pod_spec(metastore)["containers"][0]["env"]}
    assert env["METASTORE_PORT"]["value"] == "29083"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_pod_is_restricted_with_a_read_only_root(helm: str, values: str) -> None:
    docs = render(helm, "-f", str(CHART / values))
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    # 3 StatefulSets, the metastore and schema registry Deployments, 3 helm test pods
    assert len(workloads) == 8
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_schema_refuses_a_root_pod(helm: str) -> None:
    result = run_helm(
        helm,
        "template",
        "rel",
        str(CHART),
        "--set",
        "podSecurityContext.runAsNonRoot=false",
        check=False,
    )
    assert result.returncode != 0
    assert "/podSecurityContext/runAsNonRoot" in result.stderr


def test_data_lives_on_claims(helm: str) -> None:
    docs = render(helm, "--set", "persistence.storageClass=fast")
    claims = {
        doc["metadata"]["name"]: doc["spec"]["volumeClaimTemplates"]
        for doc in by_kind(docs, "StatefulSet")
    }
    mounts = {
        "cryptopipe-hdfs-namenode": ("name", "/hadoop/dfs/name"),
        "cryptopipe-hdfs-datanode": ("data", "/hadoop/dfs/data"),
        "cryptopipe-postgres": ("data", "/var/lib/postgresql/data"),
    }
    assert set(claims) == set(mounts)
    for name, (claim, path) in mounts.items():
        (template,) = claims[name]
        assert template["metadata"]["name"] == claim
        assert template["spec"]["storageClassName"] == "fast"
        statefulset = one(docs, "StatefulSet", name)
        container = pod_spec(statefulset)["containers"][0]
        assert {"name": claim, "mountPath": path} in container["volumeMounts"]
        retention = statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]
        assert retention["whenDeleted"] == "Retain"  # keepOnUninstall defaults to true
    pool = one(docs, "KafkaNodePool", "cryptopipe-dual-role")
    assert pool["spec"]["storage"]["class"] == "fast"
    assert pool["spec"]["storage"]["deleteClaim"] is False


def test_labels_on_everything(helm: str) -> None:
    for doc in render(helm):
        labels = doc["metadata"]["labels"]
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/name"] == "cryptopipe-platform", where
        assert labels["app.kubernetes.io/instance"] == "rel", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["app.kubernetes.io/part-of"] == "cryptopipe", where
        assert labels["app.kubernetes.io/component"], where
        assert doc["metadata"]["namespace"] == "team", where  # never hard-coded
        if doc["kind"] in ("Deployment", "StatefulSet"):
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()


def test_secrets_never_land_in_config_maps(helm: str) -> None:
    docs = render(helm)
    (secret,) = by_kind(docs, "Secret")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 32
    for config_map in by_kind(docs, "ConfigMap"):
        assert password not in yaml.safe_dump(config_map), config_map["metadata"]["name"]
    site = one(docs, "ConfigMap", "cryptopipe-hive-metastore-conf")["data"]["metastore-site.xml"]
    assert "${env.METASTORE_DB_PASSWORD}" in site
    assert "<name>metastore.metadata.transformer.class</name><value> </value>" in site
    assert "hdfs://cryptopipe-hdfs-namenode:8020/user/hive/warehouse" in site
    metastore = pod_spec(one(docs, "Deployment", "cryptopipe-hive-metastore"))["containers"][0]
    env = {e["name"]: e for e in metastore["env"]}
    assert env["METASTORE_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "cryptopipe-hive-metastore-db",
        "key": "password",
    }


def test_external_database_uses_the_users_secret_and_no_statefulset(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "hiveMetastore.database.external.enabled=true",
        "--set",
        "hiveMetastore.database.external.host=pg.example",
        "--set",
        "hiveMetastore.database.existingSecret=metastore-db",
    )
    assert not by_kind(docs, "Secret")
    assert "cryptopipe-postgres" not in {
        d["metadata"]["name"] for d in by_kind(docs, "StatefulSet")
    }
    site = one(docs, "ConfigMap", "cryptopipe-hive-metastore-conf")["data"]["metastore-site.xml"]
    assert "jdbc:postgresql://pg.example:5432/metastore" in site


def test_spark_rbac_in_each_pipeline_namespace(helm: str) -> None:
    docs = render(helm, "--set", "spark.namespaces={team-a,team-b}")
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        spark = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == "cryptopipe-spark"]
        assert sorted(d["metadata"]["namespace"] for d in spark) == ["team-a", "team-b"]
    role = next(r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "cryptopipe-spark")
    assert "pods" in role["rules"][0]["resources"] and "create" in role["rules"][0]["verbs"]


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("hdfs.datanode.replicas=two", "/hdfs/datanode/replicas': got string, want integer"),
        ("kafka.provider=confluent", "/kafka/provider"),
        ("hdfs.namenode.heap=lots", "/hdfs/namenode/heap"),
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
    ],
)
def test_schema_rejects_wrong_values_clearly(helm: str, setting: str, where: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr, result.stderr


def test_every_value_is_typed_and_described() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, value: Any, path: str) -> None:
        assert "description" in node, f"{path}: no description"
        assert "type" in node or "const" in node, f"{path}: no type"
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key}: not in the schema"
                walk(node["properties"][key], child, f"{path}.{key}")

    for key, value in values.items():
        walk(schema["properties"][key], value, key)


def test_disruption_budgets_cover_hdfs_the_metastore_and_the_operator(helm: str) -> None:
    budgets = {d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {
        "cryptopipe-hdfs-namenode",
        "cryptopipe-hdfs-datanode",
        "cryptopipe-hive-metastore",
    }
    workloads = {d["metadata"]["name"]: d for d in render(helm) if d["kind"] in WORKLOADS}
    for name, budget in budgets.items():
        assert budget["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": workloads[name]["spec"]["selector"]["matchLabels"]},
        }
    assert not [d for d in render(helm, "--set", "podDisruptionBudget.enabled=false")
                if d["kind"] == "PodDisruptionBudget"]  # fmt: skip
    operator = [
        doc
        for doc in yaml.safe_load_all(render_text(helm, chart=OPERATOR_CHART))
        if doc and doc["kind"] in ("PodDisruptionBudget", "Deployment")
    ]
    (deployment,) = [d for d in operator if d["kind"] == "Deployment"]
    (budget,) = [d for d in operator if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_dashboards_read_only_their_namespaces_pipelines(helm: str) -> None:
    docs = render(helm, "--set", "spark.namespaces={team,lab}")
    roles = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-dashboard")
    ]
    assert {r["metadata"]["namespace"] for r in roles} == {"team", "lab"}
    for role in roles:
        assert role["rules"] == [
            {"apiGroups": ["cryptopipe.io"], "resources": ["cryptopipelines"],
             "verbs": ["get", "list", "watch"]}
        ]  # fmt: skip
    bindings = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-dashboard")
    ]
    assert {(b["subjects"][0]["name"], b["subjects"][0]["namespace"]) for b in bindings} == {
        ("cryptopipe-dashboard", "team"),
        ("cryptopipe-dashboard", "lab"),
    }
    info = one(docs, "ConfigMap", "cryptopipe-platform")
    values = yaml.safe_load(info["data"]["operator-values.yaml"])
    assert values["platform"]["dashboard"] == {"serviceAccount": "cryptopipe-dashboard"}
