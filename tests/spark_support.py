"""Spark settings for tests, from the test bed's environment."""

from __future__ import annotations

from cryptopipe_jobs.spark_session import SparkSettings


def testbed_spark_settings(env: dict[str, str], app_name: str) -> SparkSettings:
    return SparkSettings(
        app_name=app_name,
        jars=env["CRYPTOPIPE_SPARK_JARS"].split(","),
        default_fs=env["CRYPTOPIPE_HDFS_URL"],
        hive_metastore_uri=env["CRYPTOPIPE_HIVE_METASTORE_URI"],
        warehouse_dir=env["CRYPTOPIPE_HIVE_WAREHOUSE"],
    )
