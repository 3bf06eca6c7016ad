from __future__ import annotations

import pytest

from cryptopipe_jobs.spark_session import SparkSettings, session_config

pytestmark = pytest.mark.unit


def test_local_session_binds_to_loopback_and_passes_jars() -> None:
    config = session_config(SparkSettings(app_name="t", jars=["/a.jar", "/b.jar"]))
    assert config["spark.driver.bindAddress"] == "127.0.0.1"
    assert config["spark.jars"] == "/a.jar,/b.jar"
    assert config["spark.sql.session.timeZone"] == "UTC"
    assert "spark.sql.catalogImplementation" not in config


def test_hive_and_hdfs_settings_only_when_configured() -> None:
    config = session_config(
        SparkSettings(
            app_name="t",
            master="k8s://https://kubernetes.default.svc",
            default_fs="hdfs://nn:8020",
            hive_metastore_uri="thrift://hms:9083",
            extra={"spark.sql.shuffle.partitions": "8"},
        )
    )
    assert config["spark.sql.catalogImplementation"] == "hive"
    assert config["spark.hadoop.hive.metastore.uris"] == "thrift://hms:9083"
    assert config["spark.hadoop.fs.defaultFS"] == "hdfs://nn:8020"
    assert "spark.driver.bindAddress" not in config
    assert config["spark.sql.shuffle.partitions"] == "8"


def test_hdfs_close_retries_start_small_but_give_up_no_sooner_than_ten_seconds() -> None:
    hdfs = session_config(SparkSettings(app_name="t", default_fs="hdfs://nn:8020"))
    key = "spark.hadoop.dfs.client.block.write.locateFollowingBlock"
    first_ms, retries = int(hdfs[f"{key}.initial.delay.ms"]), int(hdfs[f"{key}.retries"])
    assert first_ms <= 20
    # The client sleeps first_ms, doubling, once per retry before it fails the close.
    assert first_ms * (2**retries - 1) >= 10_000
    local = session_config(SparkSettings(app_name="t"))
    assert not any(name.startswith(key) for name in local)


def test_no_master_leaves_it_to_spark_submit() -> None:
    config = session_config(SparkSettings(app_name="t", master=None))
    assert "spark.master" not in config
    assert "spark.driver.bindAddress" not in config


def test_the_ui_is_off_unless_a_port_asks_for_it_with_the_prometheus_servlet() -> None:
    assert session_config(SparkSettings(app_name="t"))["spark.ui.enabled"] == "false"
    config = session_config(SparkSettings(app_name="cryptopipe-aggregate", ui_port=4040))
    assert config["spark.ui.enabled"] == "true" and config["spark.ui.port"] == "4040"
    assert config["spark.metrics.conf.*.sink.prometheusServlet.path"] == "/metrics/prometheus"
    # Stable series names across submissions: the app's name, not its id.
    assert config["spark.metrics.namespace"] == "cryptopipe-aggregate"
