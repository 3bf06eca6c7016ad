"""The spark-operator test bed component's pure parts: where its SPARK_HOME comes from."""

from __future__ import annotations

from pathlib import Path

import pyspark
import pytest

from cryptopipe_testbed.components import with_requirements
from cryptopipe_testbed.components.spark_operator import missing_kubernetes_jars, spark_home

pytestmark = pytest.mark.unit


def test_sparkop_starts_after_the_control_plane_and_the_real_node() -> None:
    assert [c.name for c in with_requirements(["sparkop"])] == ["kube", "node", "sparkop"]


def test_spark_home_is_the_pyspark_package_of_the_environment(tmp_path: Path) -> None:
    assert spark_home(tmp_path) is None
    package = tmp_path / "lib" / "python3.11" / "site-packages" / "pyspark"
    package.mkdir(parents=True)
    assert spark_home(tmp_path) == package


def test_the_locked_pyspark_wheel_can_submit_to_kubernetes() -> None:
    """spark-kubernetes and the fabric8 client ship in the wheel: nothing to add from Maven."""
    assert missing_kubernetes_jars(Path(pyspark.__file__).parent) == []


def test_a_spark_home_without_the_kubernetes_jars_is_reported(tmp_path: Path) -> None:
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "spark-core_2.13-4.1.1.jar").touch()
    assert len(missing_kubernetes_jars(tmp_path)) == 3
