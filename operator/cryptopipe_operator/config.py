"""The platform configuration the operator adds to every pipeline's spec.

What a CryptoPipeline does not say (images, where Kafka, HDFS and the Hive metastore are, how
pods are scheduled) comes from one file the chart renders from its values (`--config`), read
once at start into an explicit data class. Builders receive it as an argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cryptopipe_schemas.kafka_auth import MECHANISMS, PROTOCOLS


@dataclass(frozen=True)
class Images:
    producer: str = "cryptopipe/producer:0.1.0"
    spark: str = "cryptopipe/spark:0.1.0"
    trainer: str = "cryptopipe/trainer:0.1.0"
    dashboard: str = "cryptopipe/dashboard:0.1.0"
    pull_policy: str = "IfNotPresent"


@dataclass(frozen=True)
class Kafka:
    bootstrap_servers: str = "cryptopipe-kafka-bootstrap:9092"
    # "strimzi": KafkaTopic resources and the Kafka cluster's readiness are managed through
    # Strimzi; "external": the topics are someone else's business.
    mode: str = "strimzi"
    cluster: str = "cryptopipe"
    cluster_namespace: str = ""  # empty: the operator's own namespace
    # A Confluent-compatible schema registry (Apicurio's ccompat API, Confluent's, ...): the
    # clients register our schemas there and frame records with its ids; empty: derived ids.
    schema_registry_url: str = ""
    # How every pipeline client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; with SASL,
    # the mechanism, and a Secret in each pipeline namespace with `username`, `password` and
    # (TLS) `ca.crt`, whose values reach the clients as CRYPTOPIPE_KAFKA_* variables.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    auth_secret: str = ""
    # With SCRAM: the operator creates one user per component of each pool (or dedicated
    # pipeline), with ACLs limited to its own topics, through the Admin API as the admin its
    # own environment names (CRYPTOPIPE_KAFKA_*); each component's pods then connect as their
    # own user, from a Secret the operator writes, instead of as `authSecret`'s user.
    manage_users: bool = False
    # The chart's: the Secret its operator Deployment takes the admin and key from.
    admin_secret: str = ""


@dataclass(frozen=True)
class Storage:
    hdfs_url: str = "hdfs://cryptopipe-hdfs-namenode:8020"
    webhdfs_url: str = "http://cryptopipe-hdfs-namenode:9870"
    hive_metastore_uri: str = "thrift://cryptopipe-hive-metastore:9083"


@dataclass(frozen=True)
class Spark:
    version: str = "4.1.1"
    service_account: str = "cryptopipe-spark"
    main_application_file: str = "local:///opt/cryptopipe/aggregate.py"
    executor_instances: int = 1


@dataclass(frozen=True)
class Dashboard:
    # The platform chart's read-only one (get, list and watch of CryptoPipelines in its
    # namespace); empty: the dashboards get no Kubernetes access and list no pipelines.
    service_account: str = ""
    # Added to every dashboard Ingress: an authentication front (oauth2-proxy's or basic auth's
    # annotations for the Ingress controller), TLS redirects, a cert-manager issuer.
    ingress_annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scheduling:
    """Applied to every pod the operator creates (for example a kwok fake node's toleration)."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Freshness:
    enabled: bool = True
    max_age_seconds: int = 300
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class Pools:
    """Requests (and memory limits) of each pool's shared producer, Spark driver and executor,
    and predictor: sized for the pool's trades per second, not per pipeline."""

    producer_cpu: str = "100m"
    producer_memory: str = "256Mi"
    aggregator_cpu: str = "500m"
    aggregator_memory: str = "1Gi"
    predictor_cpu: str = "100m"
    predictor_memory: str = "768Mi"
    # Training Jobs of one pool that run at once; the others wait, suspended, oldest first.
    training_concurrency: int = 2


@dataclass(frozen=True)
class NetworkPolicy:
    """Where the platform's services are, for the NetworkPolicies of each pipeline namespace
    (children.network_policy): the peers pipeline pods may reach, and who may reach them.
    Off by default until they are proven under an enforcing engine (docs/security.md)."""

    enabled: bool = False
    # The namespace of the platform's pods (Kafka, HDFS, the metastore, the registry); empty:
    # the operator's. Services outside the cluster are reached through `platformCidrs`.
    platform_namespace: str = ""
    platform_cidrs: list[str] = field(default_factory=list)
    # Ports the URLs in kafka and storage do not name: DataNode transfer and HTTP.
    extra_platform_ports: list[int] = field(default_factory=lambda: [9866, 9864])
    # The API server (the Spark driver creates its executors, the dashboard lists pipelines).
    api_server_cidrs: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    api_server_ports: list[int] = field(default_factory=lambda: [443, 6443])
    # The exchange's websocket and REST endpoints, for the producers.
    exchange_cidrs: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    exchange_ports: list[int] = field(default_factory=lambda: [443, 9443])
    # Cluster DNS: the ports its pods listen on (after the Service's port mapping).
    dns_ports: list[int] = field(default_factory=lambda: [53])
    # Who may scrape the metrics ports besides the operator (Prometheus's namespace).
    metrics_namespaces: list[str] = field(default_factory=lambda: ["monitoring"])
    # Who may open the dashboards: the Ingress controller's namespace.
    dashboard_namespaces: list[str] = field(default_factory=lambda: ["ingress-nginx"])


@dataclass(frozen=True)
class PlatformConfig:
    images: Images = field(default_factory=Images)
    kafka: Kafka = field(default_factory=Kafka)
    storage: Storage = field(default_factory=Storage)
    spark: Spark = field(default_factory=Spark)
    dashboard: Dashboard = field(default_factory=Dashboard)
    scheduling: Scheduling = field(default_factory=Scheduling)
    freshness: Freshness = field(default_factory=Freshness)
    pools: Pools = field(default_factory=Pools)
    network_policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    ingress_class: str = ""
    resync_seconds: float = 30.0
    operator_namespace: str = "default"

    @property
    def kafka_namespace(self) -> str:
        return self.kafka.cluster_namespace or self.operator_namespace


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _build(cls: type, data: Mapping[str, Any], path: str) -> Any:
    fields = {_camel(f.name): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{path or 'config'}: unknown keys {unknown} (known: {sorted(fields)})")
    values: dict[str, Any] = {}
    for key, spec in fields.items():
        if key not in data:
            continue
        value = data[key]
        nested = spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
        if nested is not None and dataclasses.is_dataclass(nested):
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}{key}: must be a mapping")
            values[spec.name] = _build(nested, value, f"{path}{key}.")
        else:
            values[spec.name] = value
    return cls(**values)


def config_from_mapping(data: Mapping[str, Any] | None) -> PlatformConfig:
    config: PlatformConfig = _build(PlatformConfig, data or {}, "")
    if config.kafka.mode not in ("strimzi", "external"):
        raise ValueError(f"kafka.mode: must be strimzi or external, not {config.kafka.mode!r}")
    kafka = config.kafka
    if kafka.security_protocol not in PROTOCOLS:
        known = ", ".join(PROTOCOLS)
        raise ValueError(f"kafka.securityProtocol: one of {known}, not {kafka.security_protocol!r}")
    if kafka.security_protocol.startswith("SASL_") and (
        kafka.sasl_mechanism not in MECHANISMS or not kafka.auth_secret
    ):
        raise ValueError(
            f"kafka: {kafka.security_protocol} needs saslMechanism (one of "
            f"{', '.join(MECHANISMS)}) and authSecret (the Secret with username and password)"
        )
    if kafka.manage_users and not kafka.sasl_mechanism.startswith("SCRAM-"):
        raise ValueError(
            "kafka.manageUsers: the operator creates SCRAM users; it needs securityProtocol "
            "SASL_PLAINTEXT or SASL_SSL with saslMechanism SCRAM-SHA-256 or SCRAM-SHA-512"
        )
    return config


def load_config(path: Path | None, operator_namespace: str | None = None) -> PlatformConfig:
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if operator_namespace:
        data = {**data, "operatorNamespace": operator_namespace}
    return config_from_mapping(data)
