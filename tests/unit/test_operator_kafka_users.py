"""Each component's own Kafka user (kafka.manageUsers): scope, password, Secret, and which
Secret each component's pods read."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from cryptopipe_operator import children, pools
from cryptopipe_operator.children import kafka_users
from cryptopipe_operator.children import pool as pool_children
from cryptopipe_operator.config import PlatformConfig, config_from_mapping
from cryptopipe_operator.kafka_access import Role
from cryptopipe_operator.user_manager import KafkaUserManager
from operator_support import CONFIG, pipeline

pytestmark = pytest.mark.unit

MANAGED = dataclasses.replace(
    CONFIG,
    kafka=dataclasses.replace(
        CONFIG.kafka,
        mode="external",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        auth_secret="kafka-client",
        manage_users=True,
    ),
)


def pool_view(*members: tuple[str, str, dict[str, Any]]) -> pools.PoolView:
    bodies = [
        {
            "metadata": {"name": n, "namespace": "team", "uid": n, "creationTimestamp": f"T{i}"},
            "spec": {"symbol": s, "isolation": "shared", "pool": "majors", **extra},
        }
        for i, (n, s, extra) in enumerate(members)
    ]
    view = pools.pool_view("team", "majors", bodies, {})
    assert view is not None
    return view


def test_a_dedicated_pipelines_scope_names_its_own_ids() -> None:
    scope = kafka_users.scope(pipeline({"intervals": ["1m", "1h"]}))
    assert scope.symbols == ("BTCUSDT",)
    assert scope.intervals == ("1h", "1m")
    assert scope.model_intervals == ("1h",)
    assert scope.source == "binance"
    assert scope.transactional_id == "cryptopipe-producer.team.btc"
    assert scope.predictor_group == "cryptopipe-predict.team.btc"


def test_a_pools_scope_covers_every_served_member() -> None:
    view = pool_view(
        ("btc", "BTCUSDT", {"intervals": ["1m", "1h"]}),
        ("eth", "ETHUSDT", {"intervals": ["5m", "1h"], "model": {"interval": "5m"}}),
        ("sol", "SOLUSDT", {"suspend": True}),  # not served: not in the scope
    )
    scope = kafka_users.scope(view.pool)
    assert scope.symbols == ("BTCUSDT", "ETHUSDT")
    assert scope.intervals == ("1h", "1m", "5m")
    assert scope.model_intervals == ("1h", "5m")
    assert scope.transactional_id == pool_children.transactional_id(view.pool)
    assert scope.predictor_group == pool_children.predictor_group(view.pool)
    assert kafka_users.user(view.pool, Role.PRODUCER) == "cryptopipe.team.pool-majors.producer"


def test_passwords_are_derived_per_user_and_key() -> None:
    first = kafka_users.password(b"k" * 32, "cryptopipe.team.btc.producer")
    assert first == kafka_users.password(b"k" * 32, "cryptopipe.team.btc.producer")
    assert first != kafka_users.password(b"k" * 32, "cryptopipe.team.btc.dashboard")
    assert first != kafka_users.password(b"j" * 32, "cryptopipe.team.btc.producer")
    assert len(first) == 43 and "=" not in first


def test_a_roles_secret_holds_its_user_and_password() -> None:
    owner = pipeline()
    secret = kafka_users.secret(owner, Role.PREDICTOR, b"k" * 32)
    assert secret["metadata"]["name"] == "btc-kafka-predictor"
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "predictor"
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values == {
        "username": "cryptopipe.team.btc.predictor",
        "password": kafka_users.password(b"k" * 32, "cryptopipe.team.btc.predictor"),
    }


def credentials_secret(container: dict[str, Any]) -> str:
    (name,) = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if e["name"] in ("CRYPTOPIPE_KAFKA_USERNAME", "CRYPTOPIPE_KAFKA_PASSWORD")
    }
    return str(name)


def test_each_component_reads_its_own_users_secret() -> None:
    built = children.desired(pipeline({"dashboard": {"enabled": True}}), MANAGED)
    found: dict[str, str] = {}
    for manifest in built:
        if manifest["kind"] == "Deployment":
            (container,) = manifest["spec"]["template"]["spec"]["containers"]
            found[manifest["spec"]["template"]["metadata"]["labels"][
                "app.kubernetes.io/component"
            ]] = credentials_secret(container)  # fmt: skip
        if manifest["kind"] == "SparkApplication":
            for role in ("driver", "executor"):
                (container,) = manifest["spec"][role]["template"]["spec"]["containers"]
                found[role] = credentials_secret(container)
    assert found == {
        "producer": "btc-kafka-producer",
        "predictor": "btc-kafka-predictor",
        "dashboard": "btc-kafka-dashboard",
        "driver": "btc-kafka-aggregator",
        "executor": "btc-kafka-aggregator",
    }
    producer = next(m for m in built if m["metadata"]["name"] == "btc-producer")
    args = producer["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--transactional-id") + 1] == "cryptopipe-producer.team.btc"


def test_a_pools_components_read_the_pools_users_secrets() -> None:
    view = pool_view(("btc", "BTCUSDT", {}), ("eth", "ETHUSDT", {}))
    for manifest in pool_children.desired(view.pool, MANAGED):
        if manifest["kind"] != "Deployment":
            continue
        (container,) = manifest["spec"]["template"]["spec"]["containers"]
        component = manifest["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        assert credentials_secret(container) == f"majors-kafka-{component}-pool"


def test_without_managed_users_every_client_reads_the_platforms_secret() -> None:
    config = dataclasses.replace(
        MANAGED, kafka=dataclasses.replace(MANAGED.kafka, manage_users=False)
    )
    built = children.desired(pipeline(), config)
    producer = next(m for m in built if m["metadata"]["name"] == "btc-producer")
    (container,) = producer["spec"]["template"]["spec"]["containers"]
    assert credentials_secret(container) == "kafka-client"
    assert "--transactional-id" not in container["args"]


@pytest.mark.parametrize(
    "kafka",
    [
        {"manageUsers": True},
        {"manageUsers": True, "securityProtocol": "SASL_SSL", "saslMechanism": "PLAIN",
         "authSecret": "s"},
    ],
    ids=["plaintext", "plain-mechanism"],
)  # fmt: skip
def test_managed_users_need_scram(kafka: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"manageUsers.*SCRAM"):
        config_from_mapping({"kafka": kafka})


def manager(config: PlatformConfig, **environ: str) -> KafkaUserManager | None:
    return KafkaUserManager.from_environment(config, environ)


def test_the_operator_needs_its_key_and_a_sasl_admin_to_manage_users() -> None:
    assert manager(CONFIG) is None
    with pytest.raises(ValueError, match="CRYPTOPIPE_KAFKA_USER_KEY"):
        manager(MANAGED, CRYPTOPIPE_KAFKA_USER_KEY="short")
    with pytest.raises(ValueError, match="the admin it creates users as"):
        manager(MANAGED, CRYPTOPIPE_KAFKA_USER_KEY="k" * 16)
    admin = {
        "CRYPTOPIPE_KAFKA_USER_KEY": "k" * 16,
        "CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CRYPTOPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRYPTOPIPE_KAFKA_USERNAME": "admin",
        "CRYPTOPIPE_KAFKA_PASSWORD": "secret",
    }
    assert manager(MANAGED, **admin) is not None  # nothing connects until a first pass


def body(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


def users_of(namespace: str, owner: str) -> list[str]:
    return [f"cryptopipe.{namespace}.{owner}.{role.value}" for role in kafka_users.ROLES]


def test_users_are_read_back_as_namespace_owner_and_role() -> None:
    assert kafka_users.parse_user("cryptopipe.team.btc.usdt.producer") == (
        "team", "btc.usdt", Role.PRODUCER,
    )  # fmt: skip
    assert kafka_users.parse_user("cryptopipe.team.pool-majors.dashboard") == (
        "team", "pool-majors", Role.DASHBOARD,
    )  # fmt: skip
    for foreign in (
        "cryptopipe-admin",
        "alice",
        "cryptopipe.team.btc.admin",
        "cryptopipe..x.producer",
    ):
        assert kafka_users.parse_user(foreign) is None


def test_only_the_users_of_gone_pipelines_and_pools_in_watched_namespaces_are_orphans() -> None:
    shared = {"symbol": "ETHUSDT", "isolation": "shared", "pool": "majors"}
    live = [body("team", "btc", {"symbol": "BTCUSDT"}), body("team", "eth", shared)]
    existing = [
        *users_of("team", "btc"),  # a live dedicated pipeline
        *users_of("team", "pool-majors"),  # a pool a live pipeline shares
        *users_of("team", "sol"),  # a deleted pipeline
        *users_of("team", "pool-alts"),  # a pool whose last member left
        *users_of("other", "xrp"),  # a namespace another operator watches
        "cryptopipe-admin",  # not ours
        "alice",
    ]
    assert kafka_users.orphan_users(existing, live, ["team"]) == sorted(
        users_of("team", "sol") + users_of("team", "pool-alts")
    )
    assert kafka_users.orphan_users(existing, live, ["other"]) == sorted(users_of("other", "xrp"))
    # A pipeline that left the pool for a dedicated one keeps its own name's users; the pool's go.
    left = [body("team", "eth", {"symbol": "ETHUSDT"})]
    assert kafka_users.orphan_users(
        users_of("team", "pool-majors") + users_of("team", "eth"), left, ["team"]
    ) == sorted(users_of("team", "pool-majors"))


def test_an_invalid_pipeline_keeps_its_own_and_every_pool_user_of_its_namespace() -> None:
    broken = [body("team", "eth", {"symbol": "not a symbol", "isolation": "shared"})]
    existing = [
        *users_of("team", "eth"),
        *users_of("team", "pool-majors"),
        *users_of("team", "sol"),
    ]
    assert kafka_users.orphan_users(existing, broken, ["team"]) == sorted(users_of("team", "sol"))
