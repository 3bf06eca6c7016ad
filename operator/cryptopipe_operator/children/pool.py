"""A pool's shared children: its members' specs, one producer, one SparkApplication and one
predictor.

Pure. Pipelines with `isolation: shared` keep their own ConfigMap, topics, training, predictor
and dashboard; what scales with trades rather than with symbols is built here, once per pool:
- the members ConfigMap, one `<pipeline>.yaml` per served pipeline, which the producer and the
  Spark driver mount as a folder;
- the producer Deployment, rolled (Recreate) when the members change: a producer reads its
  symbols at the start, and the new one resumes every symbol after its last committed trade.
  Its transactional id is the pool's, not its symbols', so the new producer fences the old;
- the SparkApplication, which never changes with the members (a change would resubmit it): the
  driver reads the members folder again while it runs (aggregate.pool), as the kubelet updates
  the mounted ConfigMap;
- the predictor, which reads the folder again too (predict.members), and serves each member
  from the member's own registry, reloaded per member;
- the dashboard, whose symbol selector lists every member that asks for a dashboard, each with
  its own registry; it rolls when that list changes.
"""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children import aggregator, configmap, dashboard, predictor, training
from cryptopipe_operator.children.common import (
    POOL_SPEC_DIR,
    PREDICTOR_METRICS_PORT,
    PRODUCER_METRICS_PORT,
    Pipeline,
    Pool,
    container,
    deployment,
    digest,
    kafka_client,
    metadata,
    metrics_service,
    pod_template,
    schema_registry_args,
    scratch_mount,
    spec_mount,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import ComponentResources, SourceKind
from cryptopipe_schemas.storage import checkpoint_location, storage_base

PRODUCER = "producer"
MEMBER_FILE_SUFFIX = ".yaml"


def producer_name(pool: Pool) -> str:
    return pool.child(PRODUCER)


def producer_metrics_service_name(pool: Pool) -> str:
    return pool.child("producer-metrics")


def aggregator_name(pool: Pool) -> str:
    return pool.child(aggregator.COMPONENT)


def transactional_id(pool: Pool) -> str:
    """One per pool: a rolled producer of the pool fences its predecessor, whatever symbols
    either of them had."""
    return f"cryptopipe-producer.pool.{pool.namespace}.{pool.name}"


def predictor_group(pool: Pool) -> str:
    return f"cryptopipe-predict.pool.{pool.namespace}.{pool.name}"


def checkpoint_root(pool: Pool, config: PlatformConfig) -> str:
    base = storage_base(config.storage.hdfs_url, pool.spec.sinks.hdfs.path)
    return checkpoint_location(base, f"{pool.namespace}/pool-{pool.name}")


def build_members(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(pool, pool.config_map, "config"),
        "data": {
            f"{member.name}{MEMBER_FILE_SUFFIX}": configmap.rendered_pipeline(member)
            for member in pool.members
        },
    }


def producer_args(pool: Pool, config: PlatformConfig) -> list[str]:
    out = [
        "--spec-dir", POOL_SPEC_DIR,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        "--metrics-port", str(PRODUCER_METRICS_PORT),
        "--transactional-id", transactional_id(pool),
        *schema_registry_args(config),
    ]  # fmt: skip
    if pool.spec.source.kind is SourceKind.REPLAY:
        out.append("--idle-after-replay")  # a finished replay must not crash-loop
    return out


def build_producer(pool: Pool, config: PlatformConfig) -> dict[str, Any]:
    requests = ComponentResources(config.pools.producer_cpu, config.pools.producer_memory)
    arguments = producer_args(pool, config)
    main = container(PRODUCER, config.images.producer, arguments, requests, config)
    main["command"] = ["cryptopipe-producer"]
    main["volumeMounts"] = [spec_mount(pool), scratch_mount()]
    main["ports"] = [{"name": "metrics", "containerPort": PRODUCER_METRICS_PORT}]
    main["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "periodSeconds": 10,
        "failureThreshold": 6,
    }
    main["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5}
    # Rolls on what any member's producer reads: its symbol and source.
    config_hash = digest(*((m.name, m.spec.symbol, m.spec.source) for m in pool.members))
    template = pod_template(
        pool, PRODUCER, [kafka_client(main, config, pool, PRODUCER)], config, config_hash
    )
    out = deployment(pool, producer_name(pool), PRODUCER, template)
    out["spec"]["strategy"] = {"type": "Recreate"}  # never two producers of the same trades
    return out


def build_producer_metrics_service(pool: Pool) -> dict[str, Any]:
    return metrics_service(
        pool, producer_metrics_service_name(pool), PRODUCER, PRODUCER_METRICS_PORT
    )


def aggregator_args(pool: Pool, config: PlatformConfig) -> list[str]:
    return [
        "--spec-dir", POOL_SPEC_DIR,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        "--checkpoint", checkpoint_root(pool, config),
        "--hdfs-url", config.storage.hdfs_url,
        "--metastore-uri", config.storage.hive_metastore_uri,
        "--master", "submit",
        "--hive-ddl-dir", aggregator.HIVE_DDL_DIR,
        *aggregator.metrics_args(),
        *schema_registry_args(config),
    ]  # fmt: skip


def build_aggregator(pool: Pool, config: PlatformConfig) -> dict[str, Any]:
    requests = ComponentResources(config.pools.aggregator_cpu, config.pools.aggregator_memory)
    # The members are not part of it: they reach the running driver through its volume.
    config_hash = digest(pool.spec.sinks)
    return aggregator.application(
        pool, aggregator_name(pool), aggregator_args(pool, config), requests, config_hash, config
    )


def predictor_name(pool: Pool) -> str:
    return pool.child(predictor.COMPONENT)


def predictor_metrics_service_name(pool: Pool) -> str:
    return pool.child("predictor-metrics")


def predictor_args(pool: Pool, config: PlatformConfig) -> list[str]:
    return [
        "--spec-dir", POOL_SPEC_DIR,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        # Each member's registry is <root><sinks.hdfs.path>/models/<namespace>/<name>.
        "--registry-root", config.storage.hdfs_url,
        "--webhdfs-url", config.storage.webhdfs_url,
        "--group-id", predictor_group(pool),
        "--metrics-port", str(PREDICTOR_METRICS_PORT),
        *schema_registry_args(config),
    ]  # fmt: skip


def build_predictor(pool: Pool, config: PlatformConfig) -> dict[str, Any]:
    requests = ComponentResources(config.pools.predictor_cpu, config.pools.predictor_memory)
    main = predictor.predictor_container(predictor_args(pool, config), requests, config)
    main["volumeMounts"] = [spec_mount(pool), scratch_mount()]
    # The members are not part of it: it reads the folder again as they join and leave.
    main = kafka_client(main, config, pool, predictor.COMPONENT)
    template = pod_template(pool, predictor.COMPONENT, [main], config, digest(pool.name))
    return deployment(pool, predictor_name(pool), predictor.COMPONENT, template)


def build_predictor_metrics_service(pool: Pool) -> dict[str, Any]:
    return metrics_service(
        pool, predictor_metrics_service_name(pool), predictor.COMPONENT, PREDICTOR_METRICS_PORT
    )


def dashboard_name(pool: Pool) -> str:
    return pool.child(dashboard.COMPONENT)


def shown(pool: Pool) -> list[Pipeline]:
    """The members whose spec asks for a dashboard: the pool's one lists them all."""
    return [member for member in pool.members if member.spec.dashboard.enabled]


def dashboard_args(pool: Pool, config: PlatformConfig) -> list[str]:
    listed = shown(pool)
    registries = ",".join(
        f"{m.spec.symbol}={training.registry_web_location(m, config)}" for m in listed
    )
    return dashboard.dashboard_args(listed, config, ["--registries", registries])


def build_dashboard(pool: Pool, config: PlatformConfig) -> list[dict[str, Any]]:
    """The pool's dashboard (Deployment, Service, and an Ingress with every member's host),
    sized by the pool's settings; none when no member asks for one."""
    listed = shown(pool)
    if not listed:
        return []
    name = dashboard_name(pool)
    arguments = dashboard_args(pool, config)
    requests = pool.spec.resources.dashboard
    out = [
        dashboard.deployment_of(pool, name, arguments, requests, digest(arguments), config),
        dashboard.service_of(pool, name),
    ]
    ingress = dashboard.ingress_of(pool, name, dashboard.routes(listed), config)
    return [*out, ingress] if ingress is not None else out


def desired(pool: Pool, config: PlatformConfig) -> list[dict[str, Any]]:
    """The pool's shared children, in the order they are applied; none without a member."""
    if not pool.members:
        return []
    return [
        build_members(pool),
        build_producer(pool, config),
        build_producer_metrics_service(pool),
        build_aggregator(pool, config),
        build_predictor(pool, config),
        build_predictor_metrics_service(pool),
        *build_dashboard(pool, config),
    ]
