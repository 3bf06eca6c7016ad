"""The NetworkPolicies of a pipeline namespace (pure: the platform config in, manifests out).

One set per namespace, shared by every pipeline there, so they are owned like a pool's children:
by every pipeline of the namespace, none the controller, and garbage-collected with the last.
- default deny, in and out, for every pod of the namespace: what the rest do not allow is
  refused, our pods and anyone else's alike;
- our pods reach cluster DNS, the platform's services (Kafka, the schema registry, HDFS and the
  metastore, on the ports their URLs name), and each other (a Spark driver and its executors);
- the Spark driver and the dashboard reach the API server; the producers reach the exchange;
- the metrics ports accept the operator's namespace and Prometheus's; the dashboard's port
  accepts the Ingress controller's namespace.
A pod that is not ours gets nothing but the default deny.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from cryptopipe_operator.children import aggregator, dashboard, predictor, producer
from cryptopipe_operator.children.common import (
    AGGREGATOR_METRICS_PORT,
    COMPONENT_LABEL,
    DASHBOARD_PORT,
    MANAGED_BY,
    PREDICTOR_METRICS_PORT,
    PRODUCER_METRICS_PORT,
    SPARK_UI_PORT,
)
from cryptopipe_operator.config import PlatformConfig

API_VERSION = "networking.k8s.io/v1"
SCOPE_LABEL = "cryptopipe.io/scope"
SCOPE = "namespace"
NAME_PREFIX = "cryptopipe-"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
OURS = {"app.kubernetes.io/managed-by": MANAGED_BY}
METRICS_PORTS = {
    producer.COMPONENT: [PRODUCER_METRICS_PORT],
    aggregator.COMPONENT: [AGGREGATOR_METRICS_PORT, SPARK_UI_PORT],
    predictor.COMPONENT: [PREDICTOR_METRICS_PORT],
}


def _port_of(url: str, default: int) -> int:
    return urlsplit(url if "://" in url else f"tcp://{url}").port or default


def platform_ports(config: PlatformConfig) -> list[int]:
    """Every port a pipeline pod opens on the platform: from the URLs it is given."""
    ports = {_port_of(server, 9092) for server in config.kafka.bootstrap_servers.split(",")}
    ports.add(_port_of(config.storage.hdfs_url, 8020))
    ports.add(_port_of(config.storage.webhdfs_url, 9870))
    ports.add(_port_of(config.storage.hive_metastore_uri, 9083))
    if config.kafka.schema_registry_url:
        scheme = urlsplit(config.kafka.schema_registry_url).scheme
        ports.add(_port_of(config.kafka.schema_registry_url, 443 if scheme == "https" else 80))
    ports.update(config.network_policy.extra_platform_ports)
    return sorted(ports)


def _namespace_peer(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def _cidr_peers(cidrs: list[str]) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


def _tcp(ports: list[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _rules(peers: list[dict[str, Any]], ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One rule, or none: a rule with no peers would allow every peer."""
    return [{"to": peers, "ports": ports}] if peers else []


def _components(*names: str) -> dict[str, Any]:
    return {
        "matchLabels": OURS,
        "matchExpressions": [{"key": COMPONENT_LABEL, "operator": "In", "values": list(names)}],
    }


def _policy(
    namespace: str,
    suffix: str,
    pods: dict[str, Any],
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    # An empty list of rules is left out, as the API server stores it: a policy type without
    # rules denies that direction (and an empty list here would read as drift forever).
    spec: dict[str, Any] = {"podSelector": pods, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        if ingress:
            spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        if egress:
            spec["egress"] = egress
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {
            "name": NAME_PREFIX + suffix,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "cryptopipe",
                "app.kubernetes.io/part-of": "cryptopipe",
                **OURS,
                SCOPE_LABEL: SCOPE,
            },
        },
        "spec": spec,
    }


def desired(namespace: str, config: PlatformConfig) -> list[dict[str, Any]]:
    """The namespace's policies; none when the platform turns them off."""
    settings = config.network_policy
    if not settings.enabled:
        return []
    ours = {"matchLabels": OURS}
    platform_namespace = settings.platform_namespace or config.operator_namespace
    platform_peers = [_namespace_peer(platform_namespace), *_cidr_peers(settings.platform_cidrs)]
    dns = [
        {"protocol": protocol, "port": port}
        for port in settings.dns_ports
        for protocol in ("UDP", "TCP")
    ]
    scrapers = [
        _namespace_peer(name)
        for name in dict.fromkeys([config.operator_namespace, *settings.metrics_namespaces])
    ]
    return [
        _policy(namespace, "default-deny", {}, ingress=[], egress=[]),
        _policy(
            namespace,
            "pipelines",
            ours,
            ingress=[{"from": [{"podSelector": ours}]}],
            egress=[
                {"to": [{"podSelector": ours}]},
                {"to": [{"namespaceSelector": {}}], "ports": dns},
                {"to": platform_peers, "ports": _tcp(platform_ports(config))},
            ],
        ),
        _policy(
            namespace,
            "api-server",
            _components(aggregator.COMPONENT, dashboard.COMPONENT),
            egress=_rules(_cidr_peers(settings.api_server_cidrs), _tcp(settings.api_server_ports)),
        ),
        _policy(
            namespace,
            "exchange",
            _components(producer.COMPONENT),
            egress=_rules(_cidr_peers(settings.exchange_cidrs), _tcp(settings.exchange_ports)),
        ),
        *(
            _policy(
                namespace,
                f"{component}-metrics",
                _components(component),
                ingress=[{"from": scrapers, "ports": _tcp(ports)}],
            )
            for component, ports in METRICS_PORTS.items()
        ),
        _policy(
            namespace,
            "dashboard",
            _components(dashboard.COMPONENT),
            ingress=[
                {"from": rule["to"], "ports": rule["ports"]}
                for rule in _rules(
                    [_namespace_peer(name) for name in settings.dashboard_namespaces],
                    _tcp([DASHBOARD_PORT]),
                )
            ],
        ),
    ]
