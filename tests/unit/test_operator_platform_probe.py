"""What the operator probes, read from the platform configuration."""

from __future__ import annotations

import pytest

from cryptopipe_operator.config import Kafka, PlatformConfig, Storage
from cryptopipe_operator.platform_probe import Endpoint, endpoints

pytestmark = pytest.mark.unit


def test_the_chart_defaults_probe_webhdfs_the_metastore_and_the_first_broker() -> None:
    assert endpoints(PlatformConfig()) == [
        Endpoint("hdfs", "webhdfs", "cryptopipe-hdfs-namenode", 9870),
        Endpoint("hive-metastore", "tcp", "cryptopipe-hive-metastore", 9083),
        Endpoint("kafka", "tcp", "cryptopipe-kafka-bootstrap", 9092),
    ]


def test_default_ports_and_bracketed_broker_addresses() -> None:
    config = PlatformConfig(
        kafka=Kafka(bootstrap_servers="[fd00::1]:9094, other:9094"),
        storage=Storage(webhdfs_url="http://nn", hive_metastore_uri="thrift://hms"),
    )
    assert endpoints(config) == [
        Endpoint("hdfs", "webhdfs", "nn", 9870),
        Endpoint("hive-metastore", "tcp", "hms", 9083),
        Endpoint("kafka", "tcp", "fd00::1", 9094),
    ]
