"""Spark: pyspark comes from PyPI (the workspace); this component supplies the connector jars.

Spark runs inside the test or job process (local mode); there is no daemon. The Kafka and
Avro connectors, of exactly pyspark's Spark and Scala version, are resolved from Maven Central
into a cached folder passed as `spark.jars`, so nothing is downloaded through Ivy at test time.
"""

from __future__ import annotations

from pathlib import Path

from cryptopipe_testbed import maven, paths, versions
from cryptopipe_testbed.components.base import Component, Health

# What pyspark lacks. The rest of the connectors' tree duplicates jars pyspark ships, in
# older versions (scala-library, slf4j), which break it.
CONNECTOR_ARTIFACTS = (
    f"spark-sql-kafka-0-10_{versions.SCALA_BINARY}",
    f"spark-token-provider-kafka-0-10_{versions.SCALA_BINARY}",
    f"spark-avro_{versions.SCALA_BINARY}",
    "kafka-clients",
    "commons-pool2",
)


def jars_dir(version: str = versions.SPARK) -> Path:
    return paths.component_cache("spark-jars", version) / "jars"


def jars(version: str = versions.SPARK) -> list[Path]:
    return sorted(jars_dir(version).glob("*.jar"))


class Spark(Component):
    name = "spark"
    version = versions.SPARK

    def install(self) -> None:
        maven.copy_dependencies(
            "spark-connectors.xml",
            jars_dir(self.version),
            {"spark.version": self.version, "scala.binary.version": versions.SCALA_BINARY},
            extra=[f"-DincludeArtifactIds={','.join(CONNECTOR_ARTIFACTS)}"],
        )

    def start(self) -> None:
        """Nothing runs: sessions start in local mode inside the process that uses them."""

    def stop(self) -> None:
        """Nothing to stop."""

    def health(self) -> Health:
        found = {jar.name for jar in jars(self.version)}
        missing = [
            name
            for name in CONNECTOR_ARTIFACTS
            if not any(jar.startswith(name + "-") for jar in found)
        ]
        if missing:
            return Health(False, f"connector jars missing: {', '.join(missing)}")
        return Health(True, f"local mode, {len(found)} connector jars")

    def address(self) -> str:
        return "local[2]"

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_SPARK_JARS_DIR": str(jars_dir(self.version)),
            "CRYPTOPIPE_SPARK_JARS": ",".join(str(jar) for jar in jars(self.version)),
            "CRYPTOPIPE_SPARK_VERSION": self.version,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
