"""Whether the platform services every pipeline needs answer, probed at scrape time.

`cryptopipe_platform_up{service}` is 1 when the service answered within the timeout: HDFS
through WebHDFS (a GETFILESTATUS of `/`, which the NameNode answers only when it serves the
namespace), the Hive metastore and Kafka by a TCP connection to their listener (the metastore
speaks Thrift and Kafka its own protocol: a connection proves the process listens, and the
pipelines' own series say whether they work). The alert "HDFS or the metastore unreachable"
reads it. The probes run in parallel so a scrape waits at most one timeout.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cryptopipe_operator.config import PlatformConfig


@dataclass(frozen=True)
class Endpoint:
    service: str
    kind: str  # "webhdfs" or "tcp"
    host: str
    port: int


def endpoints(config: PlatformConfig) -> list[Endpoint]:
    """What to probe, from the platform configuration (pure)."""
    webhdfs = urlsplit(config.storage.webhdfs_url)
    metastore = urlsplit(config.storage.hive_metastore_uri)
    found = [
        Endpoint("hdfs", "webhdfs", webhdfs.hostname or "", webhdfs.port or 9870),
        Endpoint("hive-metastore", "tcp", metastore.hostname or "", metastore.port or 9083),
    ]
    first_broker = config.kafka.bootstrap_servers.split(",")[0].strip()
    host, _, port = first_broker.rpartition(":")
    if host and port.isdigit():
        found.append(Endpoint("kafka", "tcp", host.strip("[]"), int(port)))
    return found


def probe(endpoint: Endpoint, timeout: float) -> bool:
    try:
        if endpoint.kind == "webhdfs":
            url = f"http://{endpoint.host}:{endpoint.port}/webhdfs/v1/?op=GETFILESTATUS"
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return "FileStatus" in json.loads(response.read())
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class PlatformCollector(Collector):
    def __init__(
        self,
        targets: list[Endpoint],
        timeout: float = 1.0,
        check: Callable[[Endpoint, float], bool] = probe,
    ) -> None:
        self._targets = targets
        self._timeout = timeout
        self._check = check

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "cryptopipe_platform_up",
            "Whether a platform service answered the operator's probe at this scrape.",
            labels=["service"],
        )
        if self._targets:
            with ThreadPoolExecutor(max_workers=len(self._targets)) as pool:
                answers = list(pool.map(lambda t: self._check(t, self._timeout), self._targets))
            for target, answered in zip(self._targets, answers, strict=True):
                up.add_metric([target.service], 1.0 if answered else 0.0)
        yield up
