"""The operator's platform probes against the test bed's real HDFS, Hive metastore and Kafka,
served through its real metrics endpoint; a closed port and a stopped-looking NameNode answer 0."""

from __future__ import annotations

import pytest
from net_support import free_port, scrape

from cryptopipe_operator.config import Kafka, PlatformConfig, Storage
from cryptopipe_operator.metrics import Metrics, serve
from cryptopipe_operator.platform_probe import PlatformCollector, endpoints

pytestmark = pytest.mark.integration


def _scrape(collector: PlatformCollector) -> dict[str, float]:
    """`cryptopipe_platform_up` by service, from the operator's real metrics endpoint."""
    metrics = Metrics()
    metrics.registry.register(collector)
    port = free_port()
    server = serve(port, metrics, lambda: True, lambda: True)
    try:
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    prefix = 'cryptopipe_platform_up{service="'
    return {
        key[len(prefix) : -2]: value for key, value in samples.items() if key.startswith(prefix)
    }


def test_each_platform_service_is_up_when_it_answers(
    spark_env: dict[str, str], kafka_bootstrap: str
) -> None:
    config = PlatformConfig(
        kafka=Kafka(bootstrap_servers=kafka_bootstrap),
        storage=Storage(
            hdfs_url=spark_env["CRYPTOPIPE_HDFS_URL"],
            webhdfs_url=spark_env["CRYPTOPIPE_WEBHDFS_URL"],
            hive_metastore_uri=spark_env["CRYPTOPIPE_HIVE_METASTORE_URI"],
        ),
    )
    assert _scrape(PlatformCollector(endpoints(config))) == {
        "hdfs": 1.0,
        "hive-metastore": 1.0,
        "kafka": 1.0,
    }


def test_a_service_that_does_not_answer_is_down(kafka_bootstrap: str) -> None:
    closed = free_port()
    # Kafka's port is open but speaks no HTTP: WebHDFS there is no answer, not an error.
    host, port = kafka_bootstrap.rsplit(":", 1)
    config = PlatformConfig(
        kafka=Kafka(bootstrap_servers=f"127.0.0.1:{closed}"),
        storage=Storage(
            webhdfs_url=f"http://{host}:{port}",
            hive_metastore_uri=f"thrift://127.0.0.1:{closed}",
        ),
    )
    assert _scrape(PlatformCollector(endpoints(config), timeout=1.0)) == {
        "hdfs": 0.0,
        "hive-metastore": 0.0,
        "kafka": 0.0,
    }
