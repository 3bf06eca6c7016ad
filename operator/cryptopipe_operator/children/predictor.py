"""The predictor Deployment (reads candles, serves forecasts from the promoted model version)
and the Service that exposes its metrics (the operator reads the newest forecast time there)."""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children import training
from cryptopipe_operator.children.common import (
    PREDICTOR_METRICS_PORT,
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
from cryptopipe_schemas.spec import ComponentResources

COMPONENT = "predictor"


def name(pipeline: Pipeline) -> str:
    return pipeline.child(COMPONENT)


def metrics_service_name(pipeline: Pipeline) -> str:
    return pipeline.child("predictor-metrics")


def group_id(pipeline: Pipeline) -> str:
    """Named after the pipeline when it has a Kafka user of its own, whose ACLs name it."""
    return f"cryptopipe-predict.{pipeline.namespace}.{pipeline.name}"


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    own_group = ["--group-id", group_id(pipeline)] if config.kafka.manage_users else []
    return [
        "--spec", SPEC_FILE,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        "--registry", training.registry_location(pipeline, config),
        "--hdfs-url", config.storage.hdfs_url,
        # The predictor reads an hdfs:// registry and appends forecasts over WebHDFS.
        "--webhdfs-url", config.storage.webhdfs_url,
        "--metrics-port", str(PREDICTOR_METRICS_PORT),
        *schema_registry_args(config),
        *own_group,
    ]  # fmt: skip


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    spec = pipeline.spec
    main = predictor_container(args(pipeline, config), spec.resources.predictor, config)
    template = pod_template(
        pipeline,
        COMPONENT,
        [kafka_client(main, config, pipeline, COMPONENT)],
        config,
        digest(spec.symbol, spec.model, spec.sinks.hdfs),
    )
    return deployment(pipeline, name(pipeline), COMPONENT, template)


def predictor_container(
    arguments: list[str], requests: ComponentResources, config: PlatformConfig
) -> dict[str, Any]:
    """The predictor's container, a pipeline's or a pool's: probes and port."""
    main = container(COMPONENT, config.images.trainer, arguments, requests, config)
    main["command"] = ["cryptopipe-predict"]
    main["ports"] = [{"name": "metrics", "containerPort": PREDICTOR_METRICS_PORT}]
    # Importing TensorFlow and loading the model take a while on a busy node: the startup probe
    # holds the liveness probe back until the endpoint answers.
    main["startupProbe"] = {
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "periodSeconds": 5,
        "failureThreshold": 60,
    }
    main["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "periodSeconds": 10,
        "failureThreshold": 6,
    }
    # Ready once it consumes its candle partitions.
    main["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5}
    return main


def build_metrics_service(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    return metrics_service(
        pipeline, metrics_service_name(pipeline), COMPONENT, PREDICTOR_METRICS_PORT
    )
