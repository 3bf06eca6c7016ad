"""The NetworkPolicies of a pipeline namespace: what they select, allow and refuse, checked
against the pods and ports the operator's own builders produce, and their reconcile."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cryptopipe_operator import children, pools
from cryptopipe_operator.children import network_policy
from cryptopipe_operator.children import pool as pool_children
from cryptopipe_operator.config import NetworkPolicy, PlatformConfig
from cryptopipe_operator.reconcile import Outcome, reconcile_network_policies
from operator_support import CONFIG, pipeline

pytestmark = pytest.mark.unit

ENABLED = dataclasses.replace(
    CONFIG,
    operator_namespace="cryptopipe-system",
    network_policy=NetworkPolicy(enabled=True, platform_cidrs=["10.242.0.1/32"]),
)


def selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    """A LabelSelector's meaning (matchLabels and `In` expressions, all we render)."""
    if any(pod_labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if pod_labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels_by_component(config: PlatformConfig) -> dict[str, dict[str, str]]:
    """Every pod template the builders make for a dedicated pipeline, by component."""
    built = children.desired(pipeline({"dashboard": {"enabled": True}}), config)
    found: dict[str, dict[str, str]] = {}
    for manifest in built:
        if manifest["kind"] == "Deployment":
            labels = manifest["spec"]["template"]["metadata"]["labels"]
        elif manifest["kind"] == "SparkApplication":
            labels = manifest["spec"]["driver"]["labels"]
            assert manifest["spec"]["executor"]["labels"] == labels
        elif manifest["kind"] == "Job":
            labels = manifest["spec"]["template"]["metadata"]["labels"]
        else:
            continue
        found[labels["app.kubernetes.io/component"]] = labels
    return found


def by_name(config: PlatformConfig) -> dict[str, dict[str, Any]]:
    return {
        p["metadata"]["name"].removeprefix("cryptopipe-"): p
        for p in network_policy.desired("team", config)
    }


def test_none_unless_the_platform_turns_them_on() -> None:
    assert network_policy.desired("team", CONFIG) == []


def test_everything_in_the_namespace_is_denied_first() -> None:
    deny = by_name(ENABLED)["default-deny"]
    # No rules in either direction: the API server stores no empty lists, nor do we.
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_platform_ports_come_from_the_urls_the_pods_are_given() -> None:
    config = dataclasses.replace(
        ENABLED,
        kafka=dataclasses.replace(
            ENABLED.kafka,
            bootstrap_servers="k-0:9093,k-1:19094",
            schema_registry_url="https://registry.example/apis/ccompat/v7",
        ),
    )
    assert network_policy.platform_ports(config) == [
        443, 8020, 9083, 9093, 9864, 9866, 9870, 19094,
    ]  # fmt: skip
    egress = by_name(config)["pipelines"]["spec"]["egress"]
    platform = next(rule for rule in egress if any("ipBlock" in p for p in rule["to"]))
    assert platform["to"] == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "cryptopipe-system"}
            }
        },
        {"ipBlock": {"cidr": "10.242.0.1/32"}},
    ]
    assert {p["port"] for p in platform["ports"]} == set(network_policy.platform_ports(config))


def test_every_pod_the_operator_builds_is_ours_and_each_metrics_port_is_open_to_scrapers() -> None:
    policies = by_name(ENABLED)
    pods = pod_labels_by_component(ENABLED)
    assert set(pods) == {"producer", "aggregator", "trainer", "predictor", "dashboard"}
    for component, labels in pods.items():
        assert selects(policies["pipelines"]["spec"]["podSelector"], labels), component
    for component, ports in network_policy.METRICS_PORTS.items():
        policy = policies[f"{component}-metrics"]
        chosen = {c for c, labels in pods.items() if selects(policy["spec"]["podSelector"], labels)}
        assert chosen == {component}
        (rule,) = policy["spec"]["ingress"]
        assert [p["port"] for p in rule["ports"]] == ports
        namespaces = [p["namespaceSelector"]["matchLabels"] for p in rule["from"]]
        assert namespaces == [
            {"kubernetes.io/metadata.name": "cryptopipe-system"},  # the operator reads freshness
            {"kubernetes.io/metadata.name": "monitoring"},
        ]
    api = policies["api-server"]["spec"]["podSelector"]
    assert {c for c, labels in pods.items() if selects(api, labels)} == {"aggregator", "dashboard"}
    exchange = policies["exchange"]["spec"]["podSelector"]
    assert {c for c, labels in pods.items() if selects(exchange, labels)} == {"producer"}


def test_metrics_ports_are_the_ports_the_containers_name() -> None:
    built = children.desired(pipeline({"dashboard": {"enabled": True}}), ENABLED)
    for manifest in built:
        if manifest["kind"] != "Deployment":
            continue
        spec = manifest["spec"]["template"]["spec"]
        component = manifest["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        named = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
        if component in network_policy.METRICS_PORTS:
            assert set(network_policy.METRICS_PORTS[component]) <= named, component
        if component == "dashboard":
            (rule,) = by_name(ENABLED)["dashboard"]["spec"]["ingress"]
            assert {p["port"] for p in rule["ports"]} <= named


def test_a_pools_shared_pods_are_selected_like_a_pipelines() -> None:
    bodies = [
        {
            "metadata": {"name": n, "namespace": "team", "uid": n, "creationTimestamp": "T"},
            "spec": {"symbol": s, "isolation": "shared", "pool": "majors"},
        }
        for n, s in (("btc", "BTCUSDT"), ("eth", "ETHUSDT"))
    ]
    view = pools.pool_view("team", "majors", bodies, {})
    assert view is not None
    policies = by_name(ENABLED)
    for manifest in pool_children.desired(view.pool, ENABLED):
        if manifest["kind"] == "Deployment":
            labels = manifest["spec"]["template"]["metadata"]["labels"]
            assert selects(policies["pipelines"]["spec"]["podSelector"], labels)


def test_an_empty_list_of_peers_denies_rather_than_allowing_everyone() -> None:
    closed = dataclasses.replace(
        ENABLED,
        network_policy=NetworkPolicy(
            enabled=True, api_server_cidrs=[], exchange_cidrs=[], dashboard_namespaces=[]
        ),
    )
    policies = by_name(closed)
    assert "egress" not in policies["api-server"]["spec"]  # Egress with no rule: denied
    assert "Egress" in policies["api-server"]["spec"]["policyTypes"]
    assert "egress" not in policies["exchange"]["spec"]
    assert "ingress" not in policies["dashboard"]["spec"]
    assert policies["dashboard"]["spec"]["policyTypes"] == ["Ingress"]
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            assert rule["from"], policy["metadata"]["name"]
        for rule in policy["spec"].get("egress", []):
            assert rule["to"], policy["metadata"]["name"]


class PolicyKube:
    """The API calls the namespace's policies take: list, apply (recorded) and delete."""

    def __init__(self, live: list[dict[str, Any]]) -> None:
        self.live = {p["metadata"]["name"]: p for p in live}
        self.pipelines: list[dict[str, Any]] = []
        self.applied: list[str] = []
        self.deleted: list[str] = []

    def list(self, path: str, selector: str) -> list[dict[str, Any]]:
        if path == "/apis/cryptopipe.io/v1alpha1/namespaces/team/cryptopipelines":
            return self.pipelines
        assert path == "/apis/networking.k8s.io/v1/namespaces/team/networkpolicies"
        assert "cryptopipe.io/scope=namespace" in selector
        return list(self.live.values())

    def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(path.rsplit("/", 1)[1])
        self.live[manifest["metadata"]["name"]] = manifest
        return manifest

    def delete(self, path: str) -> None:
        name = path.rsplit("/", 1)[1]
        self.deleted.append(name)
        del self.live[name]


def body(name: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "team", "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T00:00:00Z"
    return {"metadata": meta, "spec": {"symbol": "BTCUSDT"}}


def run(kube: PolicyKube, config: PlatformConfig, me: str, *others: dict[str, Any]) -> Outcome:
    """One pipeline's pass, with the namespace's pipelines as the API server lists them."""
    outcome = Outcome()
    kube.pipelines = [body(me), *others]
    reconcile_network_policies(body(me), kube, config, lambda *_: None, outcome)  # type: ignore[arg-type]
    return outcome


def test_every_live_pipeline_owns_them_and_a_second_pass_writes_nothing() -> None:
    kube = PolicyKube([])
    run(kube, ENABLED, "btc", body("eth"), body("old", deleting=True))
    assert sorted(kube.applied) == sorted(p["metadata"]["name"] for p in kube.live.values())
    assert len(kube.applied) == len(network_policy.desired("team", ENABLED))
    for policy in kube.live.values():
        references = policy["metadata"]["ownerReferences"]
        assert [r["uid"] for r in references] == ["uid-btc", "uid-eth"]  # not the deleting one
        assert not any(r["controller"] for r in references)
    kube.applied.clear()
    again = run(kube, ENABLED, "eth", body("btc"))
    assert kube.applied == [] and again.applied == [] and again.deleted == []
    # One pipeline leaves: the others take the owners down to themselves.
    run(kube, ENABLED, "eth")
    assert {r["uid"] for p in kube.live.values() for r in p["metadata"]["ownerReferences"]} == {
        "uid-eth"
    }


def test_turned_off_they_are_deleted() -> None:
    kube = PolicyKube([])
    run(kube, ENABLED, "btc")
    assert kube.live
    outcome = run(kube, CONFIG, "btc")
    assert kube.live == {} and len(outcome.deleted) == len(kube.deleted) > 0
