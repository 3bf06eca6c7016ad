"""Apicurio Registry 3, serving the Confluent Schema Registry REST API (`/apis/ccompat/v7`).

It runs from Apicurio's own prebuilt Quarkus distribution (the `all` tar.gz that Maven Central
publishes beside `apicurio-registry-app`), with SQL storage in an H2 database file under the run
folder, so schema ids survive a restart just as the Kafka records that carry them do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

from cryptopipe_testbed import maven, paths, process, versions
from cryptopipe_testbed.components.base import Component, Health
from cryptopipe_testbed.components.kube import NODE_IP

HOST = "127.0.0.1"
PORT = 18081
MANAGEMENT_PORT = 18082  # Quarkus' management interface (/q/health, metrics); 9000 otherwise
DAEMON = "registry"
CCOMPAT_URL = f"http://{HOST}:{PORT}/apis/ccompat/v7"
# Pods (the test bed's node, a kind cluster) reach it on the node's bridge address, as they
# reach Kafka's pod listener; it listens on every address for that.
POD_CCOMPAT_URL = f"http://{NODE_IP}:{PORT}/apis/ccompat/v7"
MIN_JAVA = 21  # Apicurio Registry 3 is compiled for Java 21; the default java here is 17
JVM_ROOT = Path("/usr/lib/jvm")


def java_release(home: Path) -> int | None:
    """The feature release of the JDK at `home`, from its `release` file."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def find_java(minimum: int = MIN_JAVA) -> Path:
    """`$JAVA_HOME` when it is new enough, else the newest JDK under /usr/lib/jvm that is."""
    homes: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    found = [(java_release(home) or 0, home) for home in JVM_ROOT.glob("*") if home.is_dir()]
    homes.extend(home for _, home in sorted(found, reverse=True))
    for home in homes:
        release = java_release(home)
        if release is not None and release >= minimum and (home / "bin" / "java").exists():
            return home / "bin" / "java"
    raise process.StartError(
        f"the schema registry needs Java {minimum}+; none in $JAVA_HOME or under {JVM_ROOT}"
    )


class SchemaRegistry(Component):
    name = "registry"
    version = versions.APICURIO_REGISTRY

    @property
    def cache(self) -> Path:
        return paths.component_cache("apicurio-registry", self.version)

    @property
    def app(self) -> Path:
        """The Quarkus fast-jar folder: quarkus-run.jar, app/, lib/, quarkus/."""
        return self.cache / "quarkus-app"

    def install(self) -> None:
        if maven.is_complete(self.app, self.version):
            return
        download = self.cache / "download"
        maven.copy_dependencies(
            "apicurio-registry.xml", download, {"apicurio.version": self.version}
        )
        archive = download / f"apicurio-registry-app-{self.version}-all.tar.gz"
        staging = self.app.with_name(self.app.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        if not (staging / "quarkus-run.jar").is_file():
            raise process.StartError(f"{archive} holds no quarkus-run.jar")
        (staging / maven.COMPLETE_MARKER).write_text(self.version + "\n")
        shutil.rmtree(self.app, ignore_errors=True)
        staging.rename(self.app)
        shutil.rmtree(download)  # the archive stays in the Maven repository for a reinstall

    def _argv(self) -> list[str]:
        data = paths.component_run(self.name) / "data"
        data.mkdir(exist_ok=True)
        settings = {
            "quarkus.http.host": "0.0.0.0",  # noqa: S104 (see POD_CCOMPAT_URL)
            "quarkus.http.port": str(PORT),
            "quarkus.management.host": HOST,
            "quarkus.management.port": str(MANAGEMENT_PORT),
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "h2",
            "apicurio.datasource.url": f"jdbc:h2:file:{data / 'registry'}",
            "apicurio.datasource.jdbc.initial-size": "2",
            "apicurio.datasource.jdbc.min-size": "2",
            "apicurio.datasource.jdbc.max-size": "10",
            "apicurio.storage.snapshot.location": str(data),
            "quarkus.log.console.format": "%d{yyyy-MM-dd HH:mm:ss} %p [%c{2.}] (%t) %m%n",
        }
        return [
            str(find_java()),
            "-Xms64m",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Djava.io.tmpdir={data}",
            *(f"-D{key}={value}" for key, value in settings.items()),
            "-jar",
            str(self.app / "quarkus-run.jar"),
        ]

    def start(self) -> None:
        run = paths.component_run(self.name)
        process.start(process.Daemon(DAEMON, self._argv(), cwd=run))
        process.wait_until(
            lambda: self.health().healthy, what="schema registry", logs=[DAEMON], timeout=120
        )

    def stop(self) -> None:
        process.stop(DAEMON)

    def health(self) -> Health:
        if process.running_pid(DAEMON) is None:
            return Health(False, "not running")
        body = process.http_get(f"{CCOMPAT_URL}/subjects")
        if body is None:
            return Health(False, "ccompat API not answering")
        try:
            subjects = json.loads(body)
        except ValueError:
            return Health(False, "ccompat API answered with no JSON")
        if not isinstance(subjects, list):
            return Health(False, "ccompat API answered with no subject list")
        return Health(True, f"ccompat API serves {len(subjects)} subject(s)")

    def address(self) -> str:
        return CCOMPAT_URL

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_SCHEMA_REGISTRY_URL": CCOMPAT_URL,
            "CRYPTOPIPE_SCHEMA_REGISTRY_POD_URL": POD_CCOMPAT_URL,
        }
