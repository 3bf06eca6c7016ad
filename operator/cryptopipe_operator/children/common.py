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
POOL_LABEL = "cryptopipe.io/pool"  # on a pool's shared children, instead of the pipeline's
SYMBOL_LABEL = "cryptopipe.io/symbol"
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_HASH = "cryptopipe.io/config-hash"
SPEC_MOUNT = "/etc/cryptopipe"
SPEC_FILE = f"{SPEC_MOUNT}/pipeline.yaml"
POOL_SPEC_DIR = f"{SPEC_MOUNT}/pool"  # a pool's members, one file per pipeline
PRODUCER_METRICS_PORT = 9108
AGGREGATOR_METRICS_PORT = 9109
# Spark's web UI in the driver: its Prometheus servlet is at SPARK_METRICS_PATH.
SPARK_UI_PORT = 4040
# With the slash: Jetty answers the bare path with a redirect to the pod's own address, which a
# scrape through a proxy (the API server's) cannot follow.
SPARK_METRICS_PATH = "/metrics/prometheus/"
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


@dataclass(frozen=True)
class Pool:
    """The pipelines of one namespace and pool with `isolation: shared`, as the builders of the
    pool's shared children see them. `members` are the ones served now (not suspended), sorted
    by name; `spec` is the pool's settings (sinks, source): its oldest pipeline's."""

    name: str
    namespace: str
    spec: CryptoPipelineSpec
    members: tuple[Pipeline, ...]

    def child(self, suffix: str) -> str:
        """`<pool>-<suffix>-pool`: no pipeline's child ends in `-pool`, so none can collide."""
        return child_name(self.name, f"{suffix}-pool")

    @property
    def config_map(self) -> str:
        return self.child("members")

    @property
    def instance(self) -> str:
        return f"pool-{self.name}"


Owner = Pipeline | Pool


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


def labels(owner: Owner, component: str) -> dict[str, str]:
    common = {
        "app.kubernetes.io/name": "cryptopipe",
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "cryptopipe",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if isinstance(owner, Pool):
        return {**common, "app.kubernetes.io/instance": owner.instance, POOL_LABEL: owner.name}
    return {
        **common,
        "app.kubernetes.io/instance": owner.name,
        PIPELINE_LABEL: owner.name,
        SYMBOL_LABEL: owner.spec.symbol.lower(),
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    """Stable selector labels (never change: a Deployment's selector is immutable)."""
    if isinstance(owner, Pool):
        return {
            "app.kubernetes.io/instance": owner.instance,
            COMPONENT_LABEL: component,
            POOL_LABEL: owner.name,
        }
    return {
        "app.kubernetes.io/instance": owner.name,
        COMPONENT_LABEL: component,
        PIPELINE_LABEL: owner.name,
    }


def metadata(pipeline: Owner, name: str, component: str) -> dict[str, Any]:
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
    """Pod Security's `restricted` profile, and a read-only root: what a process writes goes to
    the pod's /tmp (scratch_volume), Spark's local dirs or HDFS."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


SCRATCH_VOLUME = "tmp"


def scratch_volume() -> dict[str, Any]:
    """The only writable folder of a container besides its data: Python's and the JVM's
    temporary files, Streamlit's and Keras's HOME (the images set HOME=/tmp)."""
    return {"name": SCRATCH_VOLUME, "emptyDir": {}}


def scratch_mount() -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}  # noqa: S108 (a pod-private emptyDir)


def spec_volume(pipeline: Owner) -> dict[str, Any]:
    return {"name": "pipeline", "configMap": {"name": pipeline.config_map}}


def spec_mount(owner: Owner | None = None) -> dict[str, Any]:
    """Where the owner's ConfigMap is: one pipeline's files, or a pool's members folder."""
    path = POOL_SPEC_DIR if isinstance(owner, Pool) else SPEC_MOUNT
    return {"name": "pipeline", "mountPath": path, "readOnly": True}


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
        "volumeMounts": [spec_mount(), scratch_mount()],
        "securityContext": container_security(),
    }


def pod_template(
    pipeline: Owner,
    component: str,
    containers: list[dict[str, Any]],
    config: PlatformConfig,
    config_hash: str,
    restart_policy: str | None = None,
) -> dict[str, Any]:
    mounted = {m["name"] for c in containers for m in c.get("volumeMounts", [])}
    spec: dict[str, Any] = {
        "securityContext": pod_security(),
        "containers": containers,
        "volumes": [
            spec_volume(pipeline),
            *([scratch_volume()] if SCRATCH_VOLUME in mounted else []),
            *(v for v in kafka_ca_volume(config) if v["name"] in mounted),
        ],
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
    pipeline: Owner,
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


KAFKA_CA_DIR = "/etc/cryptopipe/kafka"
KAFKA_CA_VOLUME = "kafka-ca"


def kafka_user_secret(owner: Owner, component: str) -> str:
    """The Secret with a component's own Kafka user (config.kafka.manageUsers)."""
    return owner.child(f"kafka-{component}")


def kafka_client_env(
    config: PlatformConfig, owner: Owner | None = None, component: str = ""
) -> list[dict[str, Any]]:
    """The CRYPTOPIPE_KAFKA_* variables of a Kafka client's container (cryptopipe_schemas.
    kafka_auth reads them): the protocol always; the credentials from the component's own
    user's Secret when the operator manages users, otherwise from the platform's Secret."""
    kafka = config.kafka
    env: list[dict[str, Any]] = [
        {"name": "CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL", "value": kafka.security_protocol}
    ]
    if kafka.security_protocol.startswith("SASL_"):
        secret = kafka.auth_secret
        if kafka.manage_users:
            if owner is None or not component:
                raise ValueError("a managed Kafka user belongs to one component of one owner")
            secret = kafka_user_secret(owner, component)
        env.append({"name": "CRYPTOPIPE_KAFKA_SASL_MECHANISM", "value": kafka.sasl_mechanism})
        env += [
            {
                "name": f"CRYPTOPIPE_KAFKA_{key.upper()}",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }
            for key in ("username", "password")
        ]
    if kafka_uses_ca(config):
        env.append({"name": "CRYPTOPIPE_KAFKA_CA_FILE", "value": f"{KAFKA_CA_DIR}/ca.crt"})
    return env


def kafka_uses_ca(config: PlatformConfig) -> bool:
    return config.kafka.security_protocol in ("SSL", "SASL_SSL") and bool(config.kafka.auth_secret)


def kafka_ca_volume(config: PlatformConfig) -> list[dict[str, Any]]:
    """The Secret's `ca.crt` (optional: a publicly signed broker needs none)."""
    if not kafka_uses_ca(config):
        return []
    secret = {
        "secretName": config.kafka.auth_secret,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
        "optional": True,
    }
    return [{"name": KAFKA_CA_VOLUME, "secret": secret}]


def kafka_ca_mount(config: PlatformConfig) -> list[dict[str, Any]]:
    if not kafka_uses_ca(config):
        return []
    return [{"name": KAFKA_CA_VOLUME, "mountPath": KAFKA_CA_DIR, "readOnly": True}]


def kafka_client(
    main: dict[str, Any], config: PlatformConfig, owner: Owner, component: str
) -> dict[str, Any]:
    """A container of `owner`'s `component` that talks to Kafka: its credentials' variables
    and CA file."""
    main["env"] = [*main.get("env", []), *kafka_client_env(config, owner, component)]
    main["volumeMounts"] = [*main.get("volumeMounts", []), *kafka_ca_mount(config)]
    return main


def schema_registry_args(config: PlatformConfig) -> list[str]:
    """Every Kafka client's registry flag: the same ids for writers and readers."""
    url = config.kafka.schema_registry_url
    return ["--schema-registry-url", url] if url else []


def scrape_annotations(port: int, path: str = "/metrics") -> dict[str, str]:
    """The `prometheus.io` annotations a Prometheus without the Prometheus Operator follows."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": path,
    }


def metrics_service(pipeline: Owner, name: str, component: str, port: int) -> dict[str, Any]:
    """A Service in front of a component's container port named `metrics`, annotated for
    Prometheus; the operator reads it through the API server's service proxy."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **metadata(pipeline, name, component),
            "annotations": scrape_annotations(port),
        },
        "spec": {
            "selector": selector(pipeline, component),
            "ports": [
                {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
            ],
        },
    }
