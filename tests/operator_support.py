"""A platform configuration and pipelines for the operator's builder tests."""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children.common import Pipeline
from cryptopipe_operator.config import config_from_mapping
from cryptopipe_schemas.spec import parse_spec

CONFIG = config_from_mapping(
    {
        "images": {
            "producer": "reg/producer:1",
            "spark": "reg/spark:1",
            "trainer": "reg/trainer:1",
            "dashboard": "reg/dashboard:1",
        },
        "kafka": {"bootstrapServers": "kafka:9092", "cluster": "main"},
        "storage": {"hdfsUrl": "hdfs://nn:8020"},
        "scheduling": {
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
        },
    }
)


def pipeline(spec: dict[str, Any] | None = None, name: str = "btc") -> Pipeline:
    return Pipeline(name, "team", parse_spec({"symbol": "BTCUSDT", **(spec or {})}))


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs a child makes: a workload's template, a SparkApplication's driver and
    executor templates."""
    if obj["kind"] in {"Deployment", "Job"}:
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if obj["kind"] == "SparkApplication":
        return [obj["spec"][role]["template"]["spec"] for role in ("driver", "executor")]
    return []


def assert_restricted_and_read_only(spec: dict[str, Any], container: dict[str, Any]) -> None:
    """Pod Security's restricted profile, a read-only root and a writable /tmp of its own."""
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    scratch = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"]
    assert {"name": scratch, "emptyDir": {}} in spec["volumes"]
