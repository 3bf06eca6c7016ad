"""The producer Deployment (exchange -> Kafka) and the Service that exposes its metrics."""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children.common import (
    PRODUCER_METRICS_PORT,
    SPEC_FILE,
    Pipeline,
    container,
    deployment,
    digest,
    kafka_client,
    metrics_service,
    pod_template,
    schema_registry_args,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import SourceKind

COMPONENT = "producer"


def name(pipeline: Pipeline) -> str:
    return pipeline.child(COMPONENT)


def metrics_service_name(pipeline: Pipeline) -> str:
    return pipeline.child("producer-metrics")


def transactional_id(pipeline: Pipeline) -> str:
    """Named after the pipeline when it has a Kafka user of its own, whose ACLs name it; the
    producer otherwise derives one from its source and symbol."""
    return f"cryptopipe-producer.{pipeline.namespace}.{pipeline.name}"


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    out = [
        "--spec", SPEC_FILE,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        "--metrics-port", str(PRODUCER_METRICS_PORT),
        *schema_registry_args(config),
    ]  # fmt: skip
    if config.kafka.manage_users:
        out += ["--transactional-id", transactional_id(pipeline)]
    if pipeline.spec.source.kind is SourceKind.REPLAY:
        # A finished replay must not exit: the Deployment would restart it in a crash loop.
        out.append("--idle-after-replay")
    return out


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    spec = pipeline.spec
    main = container(
        COMPONENT,
        config.images.producer,
        args(pipeline, config),
        spec.resources.producer,
        config,
    )
    main["command"] = ["cryptopipe-producer"]
    main["ports"] = [{"name": "metrics", "containerPort": PRODUCER_METRICS_PORT}]
    main["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "periodSeconds": 10,
        "failureThreshold": 6,
    }
    main["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5}
    # Rolls on what the producer reads: the symbol and the source (not sinks or the model).
    main = kafka_client(main, config, pipeline, COMPONENT)
    template = pod_template(pipeline, COMPONENT, [main], config, digest(spec.symbol, spec.source))
    out = deployment(pipeline, name(pipeline), COMPONENT, template)
    # One producer at a time: two would publish every trade twice during a rollout.
    out["spec"]["strategy"] = {"type": "Recreate"}
    return out


def build_metrics_service(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    return metrics_service(
        pipeline, metrics_service_name(pipeline), COMPONENT, PRODUCER_METRICS_PORT
    )
