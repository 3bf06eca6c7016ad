"""Spark reads Kafka with its real connector, writes parquet to the test bed's HDFS, and keeps
tables in the Hive metastore that a second Spark process sees."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
from aggregate_support import Scratch
from hdfs import InsecureClient
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

MESSAGES = 50


@pytest.fixture
def filled_topic(spark: SparkSession, kafka_bootstrap: str) -> Iterator[str]:
    """A topic of MESSAGES records; the topic and the test's /smoke/<topic> folder go after."""
    topic = f"smoke.spark.{uuid.uuid4().hex[:8]}"
    scratch = Scratch(spark, kafka_bootstrap, topics=[topic], paths=[f"/smoke/{topic}"])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(MESSAGES):
        producer.send(topic, key=f"k{i % 5}".encode(), value=f"{i}".encode())
    producer.flush(timeout=30)
    producer.close()
    admin.close()
    yield topic
    scratch.cleanup()


def test_structured_streaming_from_kafka_to_parquet_on_hdfs(
    spark: SparkSession, spark_env: dict[str, str], kafka_bootstrap: str, filled_topic: str
) -> None:
    base = f"/smoke/{filled_topic}"
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", filled_topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr(
            "CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "partition", "offset"
        )
    )
    query = (
        stream.writeStream.format("parquet")
        .option("path", f"{spark_env['CRYPTOPIPE_HDFS_URL']}{base}/out")
        .option("checkpointLocation", f"{spark_env['CRYPTOPIPE_HDFS_URL']}{base}/checkpoint")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(timeout=180)
    assert query.exception() is None

    written = spark.read.parquet(f"{base}/out")
    assert written.count() == MESSAGES
    assert sorted(int(row.value) for row in written.collect()) == list(range(MESSAGES))

    # The same files, read over WebHDFS by the `hdfs` client, as the dashboard will.
    client = InsecureClient(spark_env["CRYPTOPIPE_WEBHDFS_URL"], user="root")
    parquet_files = [name for name in client.list(f"{base}/out") if name.endswith(".parquet")]
    assert parquet_files
    values: list[int] = []
    for name in parquet_files:
        with client.read(f"{base}/out/{name}") as reader:
            table = pq.read_table(io.BytesIO(reader.read()))
        values.extend(int(value) for value in table.column("value").to_pylist())
    assert sorted(values) == list(range(MESSAGES))
    assert client.status(f"{base}/checkpoint/offsets")["type"] == "DIRECTORY"


SECOND_SESSION = textwrap.dedent(
    """
    import json, sys
    from cryptopipe_jobs.spark_session import SparkSettings, create_session
    settings = SparkSettings(**json.loads(sys.argv[1]))
    spark = create_session(settings)
    rows = spark.sql(f"SELECT symbol, price FROM {sys.argv[2]} ORDER BY price").collect()
    print(json.dumps([[row.symbol, row.price] for row in rows]))
    spark.stop()
    """
)


def test_hive_table_created_by_spark_is_seen_by_a_second_spark_process(
    spark: SparkSession, spark_env: dict[str, str]
) -> None:
    database = f"smoke_{uuid.uuid4().hex[:8]}"
    table = f"{database}.prices"
    spark.sql(f"CREATE DATABASE {database}")
    try:
        spark.createDataFrame(
            [("BTCUSDT", 97000.5), ("ETHUSDT", 3600.25)], "symbol STRING, price DOUBLE"
        ).write.format("parquet").saveAsTable(table)

        settings = {
            "app_name": "second-session",
            "jars": spark_env["CRYPTOPIPE_SPARK_JARS"].split(","),
            "default_fs": spark_env["CRYPTOPIPE_HDFS_URL"],
            "hive_metastore_uri": spark_env["CRYPTOPIPE_HIVE_METASTORE_URI"],
            "warehouse_dir": spark_env["CRYPTOPIPE_HIVE_WAREHOUSE"],
        }
        result = subprocess.run(
            [sys.executable, "-c", SECOND_SESSION, json.dumps(settings), table],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == [
            ["ETHUSDT", 3600.25],
            ["BTCUSDT", 97000.5],
        ]
        location = spark.sql(f"DESCRIBE FORMATTED {table}").filter("col_name = 'Location'")
        assert location.collect()[0].data_type.startswith(spark_env["CRYPTOPIPE_HDFS_URL"])
    finally:
        spark.sql(f"DROP DATABASE {database} CASCADE")
