"""Where a pipeline's data lives on HDFS: one formula each, for the operator, the jobs and the
local run alike."""

from __future__ import annotations


def storage_base(hdfs_url: str, path: str) -> str:
    """The pipeline's base folder as a URL: `hdfs://nn:8020` + `/cryptopipe`."""
    return hdfs_url.rstrip("/") + path.rstrip("/")


def checkpoint_location(base: str, owner: str) -> str:
    """The aggregator's streaming checkpoint under `base`, named by the identity of what owns
    it (`namespace/name` in a cluster, `local/<symbols>` for the local run), never by its spec,
    so a changed spec resumes from it."""
    return f"{base}/checkpoints/{owner}"


def registry_path(hdfs_path: str, namespace: str, name: str) -> str:
    """A pipeline's model registry folder on HDFS (the trainer writes it, the predictor and the
    dashboard read it): `<sinks.hdfs.path>/models/<namespace>/<name>`."""
    return f"{hdfs_path.rstrip('/')}/models/{namespace}/{name}"
