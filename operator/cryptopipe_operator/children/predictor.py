"""The predictor Deployment: reads candles, serves forecasts from the promoted model version."""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children import training
from cryptopipe_operator.children.common import (
    SPEC_FILE,
    Pipeline,
    container,
    deployment,
    digest,
    pod_template,
)
from cryptopipe_operator.config import PlatformConfig

COMPONENT = "predictor"


def name(pipeline: Pipeline) -> str:
    return pipeline.child(COMPONENT)


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    return [
        "--spec", SPEC_FILE,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        "--registry", training.registry_location(pipeline, config),
        "--hdfs-url", config.storage.hdfs_url,
    ]  # fmt: skip


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    spec = pipeline.spec
    main = container(
        COMPONENT, config.images.trainer, args(pipeline, config), spec.resources.predictor, config
    )
    main["command"] = ["cryptopipe-predict"]
    template = pod_template(
        pipeline, COMPONENT, [main], config, digest(spec.symbol, spec.model, spec.sinks.hdfs)
    )
    return deployment(pipeline, name(pipeline), COMPONENT, template)
