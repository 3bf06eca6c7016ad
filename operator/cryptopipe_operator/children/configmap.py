"""The ConfigMap holding the rendered pipeline (defaults filled in) that every pod mounts."""

from __future__ import annotations

from typing import Any

import yaml

from cryptopipe_operator.children.common import Pipeline, metadata
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import API_GROUP, API_VERSION, KIND, to_mapping


def rendered_pipeline(pipeline: Pipeline) -> str:
    """A whole CryptoPipeline manifest that `load_spec_file` reads back to the same spec."""
    document = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": pipeline.name, "namespace": pipeline.namespace},
        "spec": _without_nulls(to_mapping(pipeline.spec)),
    }
    return yaml.safe_dump(document, sort_keys=False)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def rendered_platform(config: PlatformConfig) -> str:
    return yaml.safe_dump(
        {
            "kafkaBootstrapServers": config.kafka.bootstrap_servers,
            "hdfsUrl": config.storage.hdfs_url,
            "webhdfsUrl": config.storage.webhdfs_url,
            "hiveMetastoreUri": config.storage.hive_metastore_uri,
        },
        sort_keys=True,
    )


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(pipeline, pipeline.config_map, "config"),
        "data": {
            "pipeline.yaml": rendered_pipeline(pipeline),
            "platform.yaml": rendered_platform(config),
        },
    }
