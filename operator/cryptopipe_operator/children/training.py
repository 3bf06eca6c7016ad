"""The first training Job and the CronJob that retrains on `spec.model.schedule`.

A Job's pod template is immutable, so the Job's name carries the hash of what training reads:
a change to the model's settings starts a fresh training Job (and retires the old one).
The trainer reports its outcome as JSON in its termination message (see status.py).
"""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children.common import (
    SPEC_FILE,
    Pipeline,
    container,
    digest,
    metadata,
    pod_template,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas import storage
from cryptopipe_schemas.spec import Isolation

COMPONENT = "trainer"
HASH_LABEL = "cryptopipe.io/training-hash"
WAIT_FOR_DATA_SECONDS = 1800


def training_hash(pipeline: Pipeline) -> str:
    spec = pipeline.spec
    return digest(spec.symbol, spec.model, spec.sinks.hdfs)[:8]


def job_name(pipeline: Pipeline) -> str:
    return pipeline.child(f"train-{training_hash(pipeline)}")


def cronjob_name(pipeline: Pipeline) -> str:
    return pipeline.child("retrain")


def registry_path(pipeline: Pipeline) -> str:
    return storage.registry_path(pipeline.spec.sinks.hdfs.path, pipeline.namespace, pipeline.name)


def registry_location(pipeline: Pipeline, config: PlatformConfig) -> str:
    return f"{config.storage.hdfs_url.rstrip('/')}{registry_path(pipeline)}"


def registry_web_location(pipeline: Pipeline, config: PlatformConfig) -> str:
    """The same folder over WebHDFS (what the dashboard reads)."""
    return f"{config.storage.webhdfs_url.rstrip('/')}{registry_path(pipeline)}"


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    return [
        "--spec", SPEC_FILE,
        "--hdfs-url", config.storage.hdfs_url,
        "--webhdfs-url", config.storage.webhdfs_url,
        "--registry", registry_location(pipeline, config),
        "--result-file", "/dev/termination-log",
        # The first Job starts with the aggregator: it waits for candles instead of failing.
        "--wait-for-data", str(WAIT_FOR_DATA_SECONDS),
    ]  # fmt: skip


def job_spec(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    main = container(
        COMPONENT, config.images.trainer, args(pipeline, config),
        pipeline.spec.resources.trainer, config,
    )  # fmt: skip
    main["command"] = ["cryptopipe-train"]
    main["terminationMessagePolicy"] = "FallbackToLogsOnError"
    template = pod_template(
        pipeline, COMPONENT, [main], config, training_hash(pipeline), restart_policy="Never"
    )
    template["metadata"]["labels"][HASH_LABEL] = training_hash(pipeline)
    return {"backoffLimit": 2, "template": template}


def queued(pipeline: Pipeline) -> bool:
    """A shared pipeline's training Jobs start suspended: its pool admits them, a few at a
    time (reconcile.admit_training), so that a pool's trainings queue instead of crowding the
    node."""
    return pipeline.spec.isolation is Isolation.SHARED


def build_job(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    """The training Job. A suspended Job keeps its pods from starting (or stops them) and
    resumes later: it is suspended with the pipeline, and a shared pipeline's starts queued
    (once it exists, its pool's admission decides, which the reconcile does not call drift)."""
    meta = metadata(pipeline, job_name(pipeline), COMPONENT)
    meta["labels"][HASH_LABEL] = training_hash(pipeline)
    suspend = pipeline.spec.suspend or queued(pipeline)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {**job_spec(pipeline, config), "suspend": suspend},
    }


def build_cronjob(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(pipeline, cronjob_name(pipeline), COMPONENT),
        "spec": {
            "schedule": pipeline.spec.model.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "suspend": pipeline.spec.suspend,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": metadata(pipeline, "", COMPONENT)["labels"]},
                "spec": {
                    **job_spec(pipeline, config),
                    **({"suspend": True} if queued(pipeline) else {}),
                },
            },
        },
    }
