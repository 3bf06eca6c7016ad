"""Every test bed component, in start order (a component's requirements come before it)."""

from __future__ import annotations

from cryptopipe_testbed.components.base import Component
from cryptopipe_testbed.components.hdfs import Hdfs
from cryptopipe_testbed.components.hive import HiveMetastore
from cryptopipe_testbed.components.images import Images
from cryptopipe_testbed.components.kafka import Kafka
from cryptopipe_testbed.components.kube import Kubernetes
from cryptopipe_testbed.components.node import Node
from cryptopipe_testbed.components.postgres import Postgres
from cryptopipe_testbed.components.registry import SchemaRegistry
from cryptopipe_testbed.components.spark import Spark
from cryptopipe_testbed.components.spark_operator import SparkOperator

ALL: tuple[Component, ...] = (
    Kafka(),
    Spark(),
    Hdfs(),
    Postgres(),
    HiveMetastore(),
    Kubernetes(),
    Node(),
    SparkOperator(),
    SchemaRegistry(),
    Images(),
)
BY_NAME: dict[str, Component] = {component.name: component for component in ALL}


def with_requirements(names: list[str]) -> list[Component]:
    """The named components and everything they require, in start order."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown component(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    wanted: set[str] = set()
    pending = list(names) if names else list(BY_NAME)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(BY_NAME[name].requires)
    return [component for component in ALL if component.name in wanted]
