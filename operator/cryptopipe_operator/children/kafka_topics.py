"""Strimzi KafkaTopic resources for a pipeline's topics (names from cryptopipe_schemas.topics).

The resource is named after the pipeline (two pipelines never fight over one resource); the
Kafka topic's own name is `spec.topicName`.
"""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children.common import Pipeline, metadata
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas import topics
from cryptopipe_schemas.retention import TopicKind, topic_config

API_VERSION = "kafka.strimzi.io/v1"


def topic_names(pipeline: Pipeline) -> list[tuple[TopicKind, str]]:
    """(kind, Kafka topic name) pairs this pipeline needs."""
    spec = pipeline.spec
    names: list[tuple[TopicKind, str]] = [("trades", topics.trades(spec.symbol))]
    if spec.sinks.kafka.enabled:
        names += [("candles", topics.candles(interval, spec.symbol)) for interval in spec.intervals]
    names.append(("forecasts", topics.forecasts(spec.symbol)))
    return names


def resource_name(pipeline: Pipeline, topic: str) -> str:
    return pipeline.child(topic.replace(".", "-"))


def build(pipeline: Pipeline, config: PlatformConfig) -> list[dict[str, Any]]:
    if config.kafka.mode != "strimzi":
        return []
    kafka = pipeline.spec.sinks.kafka
    out = []
    for kind, topic in topic_names(pipeline):
        meta = metadata(pipeline, resource_name(pipeline, topic), "topics")
        meta["labels"]["strimzi.io/cluster"] = config.kafka.cluster
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "KafkaTopic",
                "metadata": meta,
                "spec": {
                    "topicName": topic,
                    "partitions": kafka.partitions,
                    "replicas": kafka.replication,
                    "config": topic_config(pipeline.spec, kind),
                },
            }
        )
    return out
