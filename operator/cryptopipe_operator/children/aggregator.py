"""The aggregation as a Kubeflow SparkApplication (sparkoperator.k8s.io/v1beta2).

Its checkpoint lives on HDFS at a path that depends only on the pipeline's identity, so a
resubmission (after a spec change, a failure or a suspend) continues from where it stopped.

Volumes, security contexts and scheduling go into the driver's and executor's pod templates
(`spark.kubernetes.{driver,executor}.podTemplateFile`, which the spark-operator writes for
spark-submit), not into the SparkPodSpec fields of the same names: those only reach the pods
through the operator's mutating webhook, which an install may not run, and with both a volume
would be added twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cryptopipe_operator.children.common import (
    AGGREGATOR_METRICS_PORT,
    CONFIG_HASH,
    SPARK_METRICS_PATH,
    SPARK_UI_PORT,
    SPEC_FILE,
    Owner,
    Pipeline,
    container_security,
    digest,
    kafka_ca_volume,
    kafka_client,
    labels,
    metadata,
    pod_security,
    scheduling,
    schema_registry_args,
    scrape_annotations,
    scratch_mount,
    scratch_volume,
    spec_mount,
    spec_volume,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.quantities import parse_quantity
from cryptopipe_schemas.spec import ComponentResources
from cryptopipe_schemas.storage import checkpoint_location, storage_base

API_VERSION = "sparkoperator.k8s.io/v1beta2"
COMPONENT = "aggregator"
# The container names Spark on Kubernetes gives its pods (and looks for in a pod template).
# In the spark image (images/spark/Dockerfile), like mainApplicationFile.
HIVE_DDL_DIR = "/opt/cryptopipe/hive"
DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"


def name(pipeline: Pipeline) -> str:
    return pipeline.child(COMPONENT)


def checkpoint(pipeline: Pipeline, config: PlatformConfig) -> str:
    base = storage_base(config.storage.hdfs_url, pipeline.spec.sinks.hdfs.path)
    return checkpoint_location(base, f"{pipeline.namespace}/{pipeline.name}")


def spark_memory(quantity: str) -> str:
    """A Kubernetes memory quantity in Spark's notation (mebibytes: `1Gi` -> `1024m`)."""
    size: Decimal | None
    try:
        size = parse_quantity(quantity)
    except ValueError:
        size = None
    if size is None or size < 0 or quantity.endswith("m"):  # nor millibytes
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return f"{max(1, round(size / 2**20))}m"


def spark_cores(quantity: str) -> int:
    """Whole cores for Spark (at least one); the request itself stays exact in coreRequest."""
    millicores = int(parse_quantity(quantity) * 1000)
    return max(1, -(-millicores // 1000))


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    return [
        "--spec", SPEC_FILE,
        "--bootstrap-servers", config.kafka.bootstrap_servers,
        "--checkpoint", checkpoint(pipeline, config),
        "--hdfs-url", config.storage.hdfs_url,
        "--metastore-uri", config.storage.hive_metastore_uri,
        # spark-submit (driven by the spark-operator) sets the master: don't override it.
        "--master", "submit",
        # The image carries hive/*.hql: the tables exist before the first batch.
        "--hive-ddl-dir", HIVE_DDL_DIR,
        *metrics_args(),
        *schema_registry_args(config),
    ]  # fmt: skip


def metrics_args() -> list[str]:
    """Our series on the driver's metrics port; Spark's through its UI's servlet."""
    return [
        "--metrics-port", str(AGGREGATOR_METRICS_PORT),
        "--spark-ui-port", str(SPARK_UI_PORT),
    ]  # fmt: skip


def pod_template(owner: Owner, config: PlatformConfig, container: str) -> dict[str, Any]:
    """What Spark starts each driver or executor pod from: the spec volume, non-root, scheduling;
    the driver's metrics port by name (a PodMonitor selects it)."""
    ports = (
        [{"name": "metrics", "containerPort": AGGREGATOR_METRICS_PORT, "protocol": "TCP"}]
        if container == DRIVER_CONTAINER
        else []
    )
    main: dict[str, Any] = {
        "name": container,
        "volumeMounts": [spec_mount(owner), scratch_mount()],
        "securityContext": container_security(),
        **({"ports": ports} if ports else {}),
    }
    return {
        "spec": {
            "securityContext": pod_security(),
            "volumes": [spec_volume(owner), scratch_volume(), *kafka_ca_volume(config)],
            "containers": [kafka_client(main, config, owner, COMPONENT)],
            **scheduling(config),
        }
    }


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    spec = pipeline.spec
    # Rolls (is resubmitted) on what the aggregation reads; the producer's settings don't matter.
    config_hash = digest(spec.symbol, spec.intervals, spec.watermark, spec.sinks)
    return application(
        pipeline,
        name(pipeline),
        args(pipeline, config),
        spec.resources.aggregator,
        config_hash,
        config,
    )


def application(
    owner: Owner,
    app_name: str,
    arguments: list[str],
    requests: ComponentResources,
    config_hash: str,
    config: PlatformConfig,
) -> dict[str, Any]:
    """The SparkApplication of one pipeline's or one pool's aggregation."""
    pod_annotations = {CONFIG_HASH: config_hash}
    pod_common = {
        "labels": labels(owner, COMPONENT),
        "annotations": pod_annotations,
        "memory": spark_memory(requests.memory),
        "cores": spark_cores(requests.cpu),
        "coreRequest": requests.cpu,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "SparkApplication",
        "metadata": {
            **metadata(owner, app_name, COMPONENT),
            "annotations": {CONFIG_HASH: config_hash},
        },
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": config.images.spark,
            "imagePullPolicy": config.images.pull_policy,
            "mainApplicationFile": config.spark.main_application_file,
            "arguments": arguments,
            "sparkVersion": config.spark.version,
            "sparkConf": {
                "spark.sql.session.timeZone": "UTC",
                "spark.hadoop.fs.defaultFS": config.storage.hdfs_url,
                "spark.hadoop.hive.metastore.uris": config.storage.hive_metastore_uri,
            },
            # A streaming query never completes: restart it on failure, from its checkpoint.
            "restartPolicy": {
                "type": "Always",
                "onFailureRetryInterval": 10,
                "onSubmissionFailureRetryInterval": 20,
            },
            # The spark-operator's Service in front of the driver's UI: Spark's own series.
            "sparkUIOptions": {
                "serviceAnnotations": scrape_annotations(SPARK_UI_PORT, SPARK_METRICS_PATH)
            },
            "driver": {
                **pod_common,
                "annotations": {
                    **pod_annotations,
                    **scrape_annotations(AGGREGATOR_METRICS_PORT),
                },
                "serviceAccount": config.spark.service_account,
                "template": pod_template(owner, config, DRIVER_CONTAINER),
            },
            "executor": {
                **pod_common,
                "instances": config.spark.executor_instances,
                "template": pod_template(owner, config, EXECUTOR_CONTAINER),
            },
        },
    }
