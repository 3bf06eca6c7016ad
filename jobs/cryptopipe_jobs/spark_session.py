"""SparkSession settings for our jobs: the connector jars, HDFS, and the Hive metastore."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class SparkSettings:
    app_name: str
    # None leaves the master to spark-submit (the SparkApplication on Kubernetes).
    master: str | None = "local[2]"
    jars: Sequence[str] = ()
    default_fs: str | None = None
    hive_metastore_uri: str | None = None
    warehouse_dir: str | None = None
    driver_memory: str = "1g"
    shuffle_partitions: int = 2
    # None: no web UI. A port: the UI there, with Spark's own Prometheus servlet
    # (/metrics/prometheus and /metrics/executors/prometheus) and the streaming queries' metrics.
    ui_port: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


PROMETHEUS_SERVLET = "org.apache.spark.metrics.sink.PrometheusServlet"
PROMETHEUS_PATH = "/metrics/prometheus"


def ui_config(app_name: str, port: int) -> dict[str, str]:
    """The web UI on `port`, serving Spark's metrics to Prometheus under stable names."""
    return {
        "spark.ui.enabled": "true",
        "spark.ui.port": str(port),
        "spark.ui.prometheus.enabled": "true",
        "spark.metrics.conf.*.sink.prometheusServlet.class": PROMETHEUS_SERVLET,
        "spark.metrics.conf.*.sink.prometheusServlet.path": PROMETHEUS_PATH,
        # The default namespace is the application id, new at each submission: every restart
        # would start new series.
        "spark.metrics.namespace": app_name,
        "spark.sql.streaming.metricsEnabled": "true",
    }


# The DataNode reports a finished block to the NameNode a moment after the client's last write;
# a file close that comes first is refused and retried after a delay that doubles each time
# (Hadoop's default: 400 ms, 5 retries). Each micro-batch closes several files (offset and commit
# logs, state deltas, parquet), and four closes in ten paid the 400 ms. Retrying from 10 ms, ten
# times, gives up after about the same total (10.2 s against 12.4 s).
HDFS_CLOSE_FIRST_RETRY_MS = 10
HDFS_CLOSE_RETRIES = 10


def hdfs_client_config(prefix: str = "") -> dict[str, str]:
    """HDFS client settings for our writers (`spark.hadoop.` as the prefix for Spark)."""
    key = f"{prefix}dfs.client.block.write.locateFollowingBlock"
    return {
        f"{key}.initial.delay.ms": str(HDFS_CLOSE_FIRST_RETRY_MS),
        f"{key}.retries": str(HDFS_CLOSE_RETRIES),
    }


def session_config(settings: SparkSettings) -> dict[str, str]:
    """The `spark.*` settings for a session; pure, so that it can be checked without a JVM."""
    config = {
        "spark.app.name": settings.app_name,
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
    }
    if settings.ui_port is not None:
        config.update(ui_config(settings.app_name, settings.ui_port))
    if settings.master is not None:
        config["spark.master"] = settings.master
    if settings.master is not None and settings.master.startswith("local"):
        # Otherwise Spark binds to the machine's external address.
        config["spark.driver.host"] = "127.0.0.1"
        config["spark.driver.bindAddress"] = "127.0.0.1"
    if settings.jars:
        config["spark.jars"] = ",".join(settings.jars)
    if settings.default_fs:
        config["spark.hadoop.fs.defaultFS"] = settings.default_fs
        # DataNodes register by name; the name they advertise is the one to dial.
        config["spark.hadoop.dfs.client.use.datanode.hostname"] = "true"
        config.update(hdfs_client_config("spark.hadoop."))
    if settings.hive_metastore_uri:
        config["spark.sql.catalogImplementation"] = "hive"
        config["spark.hadoop.hive.metastore.uris"] = settings.hive_metastore_uri
    if settings.warehouse_dir:
        config["spark.sql.warehouse.dir"] = settings.warehouse_dir
    config.update(settings.extra)
    return config


def create_session(settings: SparkSettings) -> SparkSession:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in session_config(settings).items():
        builder = builder.config(key, value)
    if settings.hive_metastore_uri:
        builder = builder.enableHiveSupport()
    return builder.getOrCreate()
