"""Every child the operator builds, for a dedicated pipeline and for a pool, is valid against
the real schemas: Kubernetes' built-in kinds and the pinned Strimzi and spark-operator CRDs
(kubeconform, strict: no unknown field passes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from cryptopipe_operator import children, pools
from cryptopipe_operator.children import kafka_users, network_policy
from cryptopipe_operator.children import pool as pool_children
from cryptopipe_operator.config import NetworkPolicy, PlatformConfig
from cryptopipe_testbed import kubeconform, upstream_crds
from cryptopipe_testbed.components.kube import Kubernetes
from operator_support import CONFIG, pipeline

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def schemas() -> tuple[Path, Path]:
    Kubernetes().install()  # the cached kubeconform build; starts nothing
    crds = [yaml.safe_load(path.read_text()) for path in upstream_crds.crd_files()]
    return (
        kubeconform.builtin_schemas(),
        kubeconform.write_crd_schemas(crds, upstream_crds.cache_dir().name),
    )


def _assert_valid(manifests: list[dict[str, object]], schemas: tuple[Path, Path]) -> None:
    result = kubeconform.validate(yaml.safe_dump_all(manifests), *schemas, strict=True)
    assert result.returncode == 0 and not result.problems, (result.problems, result.stderr)
    assert result.summary.get("valid") == len(manifests), result.summary


# Kafka credentials and CA add env, volumes and mounts to every Kafka client's pod.
SASL_SSL = dataclasses.replace(
    CONFIG,
    kafka=dataclasses.replace(
        CONFIG.kafka,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        auth_secret="kafka-client",
    ),
)


@pytest.mark.parametrize("config", [CONFIG, SASL_SSL], ids=["plaintext", "sasl-ssl"])
def test_a_dedicated_pipelines_children_are_valid(
    schemas: tuple[Path, Path], config: PlatformConfig
) -> None:
    built = children.desired(
        pipeline({"symbol": "BTCUSDT", "dashboard": {"enabled": True}}), config
    )
    assert {"SparkApplication", "KafkaTopic", "Deployment"} <= {m["kind"] for m in built}
    _assert_valid(built, schemas)


@pytest.mark.parametrize("config", [CONFIG, SASL_SSL], ids=["plaintext", "sasl-ssl"])
def test_a_pools_children_are_valid(schemas: tuple[Path, Path], config: PlatformConfig) -> None:
    bodies = [
        {
            "metadata": {
                "name": name,
                "namespace": "team",
                "uid": f"uid-{name}",
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"symbol": symbol, "isolation": "shared", "pool": "majors"},
        }
        for name, symbol in (("btc", "BTCUSDT"), ("eth", "ETHUSDT"))
    ]
    view = pools.pool_view("team", "majors", bodies, {})
    assert view is not None
    built = pool_children.desired(view.pool, config)
    assert "SparkApplication" in {m["kind"] for m in built}
    _assert_valid(built, schemas)


def test_a_namespaces_network_policies_are_valid(schemas: tuple[Path, Path]) -> None:
    config = dataclasses.replace(
        CONFIG,
        network_policy=NetworkPolicy(enabled=True, platform_cidrs=["10.242.0.1/32"]),
    )
    built = network_policy.desired("team", config)
    assert {m["kind"] for m in built} == {"NetworkPolicy"}
    _assert_valid(built, schemas)


def test_a_managed_kafka_users_secrets_and_clients_are_valid(schemas: tuple[Path, Path]) -> None:
    config = dataclasses.replace(
        SASL_SSL, kafka=dataclasses.replace(SASL_SSL.kafka, manage_users=True)
    )
    owner = pipeline({"symbol": "BTCUSDT", "dashboard": {"enabled": True}})
    built = children.desired(owner, config)
    built += [kafka_users.secret(owner, role, b"k" * 32) for role in kafka_users.ROLES]
    assert sum(m["kind"] == "Secret" for m in built) == 4
    _assert_valid(built, schemas)
