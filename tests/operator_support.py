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
