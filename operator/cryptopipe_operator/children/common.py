"""What every child shares: names, labels, the pipeline it belongs to, pod settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import ComponentResources, CryptoPipelineSpec, to_mapping

MANAGED_BY = "cryptopipe-operator"
PIPELINE_LABEL = "cryptopipe.io/pipeline"
SYMBOL_LABEL = "cryptopipe.io/symbol"
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_HASH = "cryptopipe.io/config-hash"
SPEC_MOUNT = "/etc/cryptopipe"
SPEC_FILE = f"{SPEC_MOUNT}/pipeline.yaml"
PRODUCER_METRICS_PORT = 9108
PREDICTOR_METRICS_PORT = 9110
DASHBOARD_PORT = 8501
# The shortest name limit among the children: a CronJob's name (52), since its Jobs append 11
# characters and a Job's name becomes a 63-character label; Services and the Spark driver's
# pod and UI Service (name + "-driver", "-ui-svc") fit under it too.
MAX_CHILD_NAME = 52
NAME_HASH_LENGTH = 8


@dataclass(frozen=True)
class Pipeline:
    """One CryptoPipeline, as the builders see it: identity plus its validated spec."""

    name: str
    namespace: str
    spec: CryptoPipelineSpec

    def child(self, suffix: str) -> str:
        return child_name(self.name, suffix)

    @property
    def config_map(self) -> str:
        return self.child("config")


def child_name(pipeline_name: str, suffix: str) -> str:
    """`<pipeline>-<suffix>`; when that is longer than any child may be, the pipeline's name is
    cut and a hash of the whole name keeps it unique: `<cut>-<hash>-<suffix>`."""
    name = f"{pipeline_name}-{suffix}"
    if len(name) <= MAX_CHILD_NAME:
        return name
    digest = hashlib.sha256(pipeline_name.encode()).hexdigest()[:NAME_HASH_LENGTH]
    keep = MAX_CHILD_NAME - len(suffix) - len(digest) - 2
    if keep < 1:
        raise ValueError(f"child suffix {suffix!r} leaves no room for the pipeline's name")
    return f"{pipeline_name[:keep].rstrip('-')}-{digest}-{suffix}"


def labels(pipeline: Pipeline, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "cryptopipe",
        "app.kubernetes.io/instance": pipeline.name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "cryptopipe",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        PIPELINE_LABEL: pipeline.name,
        SYMBOL_LABEL: pipeline.spec.symbol.lower(),
    }


def selector(pipeline: Pipeline, component: str) -> dict[str, str]:
    """Stable selector labels (never change: a Deployment's selector is immutable)."""
    return {
        "app.kubernetes.io/instance": pipeline.name,
        COMPONENT_LABEL: component,
        PIPELINE_LABEL: pipeline.name,
    }


def metadata(pipeline: Pipeline, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": pipeline.namespace, "labels": labels(pipeline, component)}


def digest(*parts: Any) -> str:
    """A short stable hash of what a child depends on (so only affected children roll)."""
    text = json.dumps([to_mapping(part) for part in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resources(requests: ComponentResources) -> dict[str, Any]:
    return {
        "requests": {"cpu": requests.cpu, "memory": requests.memory},
        "limits": {"memory": requests.memory},
    }


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def spec_volume(pipeline: Pipeline) -> dict[str, Any]:
    return {"name": "pipeline", "configMap": {"name": pipeline.config_map}}


def spec_mount() -> dict[str, Any]:
    return {"name": "pipeline", "mountPath": SPEC_MOUNT, "readOnly": True}


def scheduling(config: PlatformConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if config.scheduling.node_selector:
        out["nodeSelector"] = dict(config.scheduling.node_selector)
    if config.scheduling.tolerations:
        out["tolerations"] = [dict(t) for t in config.scheduling.tolerations]
    return out


def container(
    name: str,
    image: str,
    args: list[str],
    requests: ComponentResources,
    config: PlatformConfig,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": config.images.pull_policy,
        "args": args,
        "resources": resources(requests),
        "volumeMounts": [spec_mount()],
        "securityContext": container_security(),
    }


def pod_template(
    pipeline: Pipeline,
    component: str,
    containers: list[dict[str, Any]],
    config: PlatformConfig,
    config_hash: str,
    restart_policy: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": pod_security(),
        "containers": containers,
        "volumes": [spec_volume(pipeline)],
        **scheduling(config),
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return {
        "metadata": {
            "labels": labels(pipeline, component),
            "annotations": {CONFIG_HASH: config_hash},
        },
        "spec": spec,
    }


def deployment(
    pipeline: Pipeline,
    name: str,
    component: str,
    template: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pipeline, name, component),
        "spec": {
            "replicas": 0 if pipeline.spec.suspend else 1,
            "selector": {"matchLabels": selector(pipeline, component)},
            "template": template,
        },
    }


def metrics_service(pipeline: Pipeline, name: str, component: str, port: int) -> dict[str, Any]:
    """A Service in front of a component's container port named `metrics`, annotated for
    Prometheus; the operator reads it through the API server's service proxy."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **metadata(pipeline, name, component),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "selector": selector(pipeline, component),
            "ports": [
                {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
            ],
        },
    }
