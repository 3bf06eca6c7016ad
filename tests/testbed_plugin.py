"""Session fixtures that reuse a running test bed or start just the components a test needs.

A component this session started is stopped at the end of the session; one that was already
running (`scripts/testbed up`) is left running. A component that cannot start fails the test
with its log tail: integration tests never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from cryptopipe_jobs.spark_session import create_session
from cryptopipe_testbed import process
from cryptopipe_testbed.components import BY_NAME, with_requirements
from spark_support import testbed_spark_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class TestbedSession:
    """Starts components on demand, once per pytest session."""

    __test__ = False  # a helper, not a test class

    def __init__(self) -> None:
        self.started: list[str] = []
        self.installed: set[str] = set()

    def ensure(self, *names: str) -> dict[str, str]:
        """Each component healthy, started if it is down (a test that stopped the node and
        failed before bringing it back costs that test alone, not every later one)."""
        env: dict[str, str] = {}
        for component in with_requirements(list(names)):
            if component.name not in self.installed:
                component.install()
                self.installed.add(component.name)
            if not component.health().healthy:
                try:
                    component.stop()  # a process that runs but does not serve
                    component.start()
                except process.StartError as error:
                    pytest.fail(f"test bed component {component.name} did not start:\n{error}")
                if component.name not in self.started:
                    self.started.append(component.name)
            env.update(component.env())
        return env

    def stop_started(self) -> None:
        for name in reversed(self.started):
            BY_NAME[name].stop()


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestbedSession]:
    session = TestbedSession()
    yield session
    session.stop_started()


@pytest.fixture(scope="session")
def kafka_bootstrap(testbed: TestbedSession) -> str:
    return testbed.ensure("kafka")["CRYPTOPIPE_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def hdfs_env(testbed: TestbedSession) -> dict[str, str]:
    return testbed.ensure("hdfs")


@pytest.fixture(scope="session")
def spark_env(testbed: TestbedSession) -> dict[str, str]:
    """Kafka, HDFS and the Hive metastore, with the connector jars for local Spark."""
    return testbed.ensure("spark", "kafka", "hdfs", "hive")


@pytest.fixture(scope="session")
def spark(spark_env: dict[str, str]) -> Iterator[SparkSession]:
    os.environ["SPARK_LOCAL_IP"] = spark_env["SPARK_LOCAL_IP"]
    session = create_session(testbed_spark_settings(spark_env, "cryptopipe-tests"))
    yield session
    session.stop()
