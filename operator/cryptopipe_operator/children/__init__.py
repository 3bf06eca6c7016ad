"""Pure builders: a pipeline's spec (plus the platform config) in, child manifests out.

One module per child kind; nothing here talks to the API server. `desired` lists every child a
pipeline should have right now (suspended pipelines have no SparkApplication; a disabled
dashboard has no Deployment), in the order they are applied. A pipeline with `isolation: shared`
has no producer, SparkApplication, predictor or dashboard of its own: its pool's serve it
(`pool.desired`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptopipe_operator.children import (
    aggregator,
    configmap,
    dashboard,
    kafka_topics,
    network_policy,
    predictor,
    producer,
    training,
)
from cryptopipe_operator.children.common import Pipeline
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import Isolation


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{path}/{name}" if name else path


CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SERVICE = Kind("v1", "Service", "services")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
JOB = Kind("batch/v1", "Job", "jobs")
CRON_JOB = Kind("batch/v1", "CronJob", "cronjobs")
INGRESS = Kind("networking.k8s.io/v1", "Ingress", "ingresses")
KAFKA_TOPIC = Kind(kafka_topics.API_VERSION, "KafkaTopic", "kafkatopics")
SPARK_APPLICATION = Kind(aggregator.API_VERSION, "SparkApplication", "sparkapplications")
POD = Kind("v1", "Pod", "pods")
# Written by user_manager (kafka users), never listed: the operator may not read Secrets.
SECRET = Kind("v1", "Secret", "secrets")
# A namespace's, not a pipeline's (network_policy): reconciled beside the pipeline's children.
NETWORK_POLICY = Kind(network_policy.API_VERSION, "NetworkPolicy", "networkpolicies")

CHILD_KINDS = (
    CONFIG_MAP, KAFKA_TOPIC, SERVICE, DEPLOYMENT, SPARK_APPLICATION, JOB, CRON_JOB, INGRESS,
)  # fmt: skip
BY_KIND = {kind.kind: kind for kind in CHILD_KINDS}


def kind_of(manifest: dict[str, Any]) -> Kind:
    return BY_KIND[manifest["kind"]]


def desired(pipeline: Pipeline, config: PlatformConfig) -> list[dict[str, Any]]:
    spec = pipeline.spec
    out: list[dict[str, Any]] = [configmap.build(pipeline, config)]
    out += kafka_topics.build(pipeline, config)
    if spec.isolation is Isolation.DEDICATED:  # shared: the pool's (children.pool)
        out += [producer.build(pipeline, config), producer.build_metrics_service(pipeline, config)]
        if not spec.suspend:  # suspending removes the SparkApplication; its checkpoint stays
            out.append(aggregator.build(pipeline, config))
    out += [training.build_job(pipeline, config), training.build_cronjob(pipeline, config)]
    if spec.isolation is Isolation.DEDICATED:
        out += [
            predictor.build(pipeline, config),
            predictor.build_metrics_service(pipeline, config),
        ]
    if spec.dashboard.enabled and spec.isolation is Isolation.DEDICATED:
        out += [dashboard.build(pipeline, config), dashboard.build_service(pipeline, config)]
        ingress = dashboard.build_ingress(pipeline, config)
        if ingress is not None:
            out.append(ingress)
    return out


__all__ = ["CHILD_KINDS", "Kind", "Pipeline", "desired", "kind_of"]
