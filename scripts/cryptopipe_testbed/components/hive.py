"""The standalone Hive metastore (thrift), backed by the test bed's PostgreSQL.

Hive 3.1.3 has no thrift bind-host setting (HiveMetaStore hands a null host to
getServerSocket), so it listens on every interface of this machine; clients use 127.0.0.1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptopipe_testbed import jvm, maven, paths, process, thrift_probe, versions
from cryptopipe_testbed.components import hdfs, postgres
from cryptopipe_testbed.components.base import Component, Health
from cryptopipe_testbed.hadoop_conf import LOG4J_PROPERTIES, site_xml

HOST = "127.0.0.1"
THRIFT_PORT = 19083
DAEMON = "hive-metastore"
METASTORE_URI = f"thrift://{HOST}:{THRIFT_PORT}"
WAREHOUSE_DIR = f"{hdfs.FS_URL}/user/hive/warehouse"
METASTORE_PACKAGE = "org.apache.hadoop.hive.metastore"
DISTRIBUTION = f"org.apache.hive:hive-standalone-metastore:{versions.HIVE_METASTORE}:tar.gz:bin"


def metastore_site() -> dict[str, str]:
    return {
        "metastore.thrift.uris": METASTORE_URI,
        "metastore.thrift.port": str(THRIFT_PORT),
        "metastore.warehouse.dir": WAREHOUSE_DIR,
        "javax.jdo.option.ConnectionURL": postgres.jdbc_url(),
        "javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        "javax.jdo.option.ConnectionUserName": postgres.METASTORE_USER,
        "javax.jdo.option.ConnectionPassword": postgres.METASTORE_PASSWORD,
        "metastore.schema.verification": "true",
        "metastore.event.db.notification.api.auth": "false",
        # The default proxy lives in hive-exec, which a standalone metastore does not have.
        "metastore.expression.proxy": f"{METASTORE_PACKAGE}.DefaultPartitionExpressionProxy",
        # Likewise the default task list names DumpDirCleanerTask from hive-exec.
        "metastore.task.threads.always": ",".join(
            [
                "org.apache.hadoop.hive.metastore.events.EventCleanerTask",
                "org.apache.hadoop.hive.metastore.RuntimeStatsCleanerTask",
                "org.apache.hadoop.hive.metastore.MaterializationsRebuildLockCleanerTask",
            ]
        ),
        "fs.defaultFS": hdfs.FS_URL,
    }


class HiveMetastore(Component):
    name = "hive"
    version = versions.HIVE_METASTORE
    requires = ("postgres", "hdfs")

    @property
    def home(self) -> Path:
        return paths.component_cache("hive-metastore", self.version) / "dist"

    @property
    def extra_lib(self) -> Path:
        return paths.component_cache("hive-metastore", self.version) / "extra-lib"

    def install(self) -> None:
        maven.copy_dependencies(
            "hive-metastore.xml", self.extra_lib, {"postgres.jdbc.version": versions.POSTGRES_JDBC}
        )
        if maven.is_complete(self.home):
            return
        staging = self.home.with_name("dist.partial")
        shutil.rmtree(staging, ignore_errors=True)
        process.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(paths.POMS_DIR / "hive-metastore.xml"),
                f"-Dmaven.repo.local={maven.local_repository()}",
                f"-Dpostgres.jdbc.version={versions.POSTGRES_JDBC}",
                "dependency:unpack",
                f"-Dartifact={DISTRIBUTION}",
                f"-DoutputDirectory={staging}",
                f"-DmarkersDirectory={staging}.markers",
            ],
            log=paths.log_dir() / "install-hive-metastore.log",
        )
        (unpacked,) = staging.iterdir()  # apache-hive-metastore-<version>-bin/
        shutil.rmtree(self.home, ignore_errors=True)
        unpacked.rename(self.home)
        (self.home / maven.COMPLETE_MARKER).write_text("ok\n")
        shutil.rmtree(staging)
        shutil.rmtree(f"{staging}.markers", ignore_errors=True)

    def conf_dir(self) -> Path:
        return paths.component_run(self.name) / "conf"

    def _java(self, main: str, *args: str) -> list[str]:
        classpath: list[str | Path] = [self.conf_dir(), f"{self.home}/lib/*", f"{self.extra_lib}/*"]
        return jvm.java_command(
            [*classpath, f"{hdfs.hadoop_lib()}/*"],
            main,
            *args,
            options=[
                "--add-opens=java.base/java.lang=ALL-UNNAMED",
                "--add-opens=java.base/java.net=ALL-UNNAMED",
                "--add-opens=java.base/java.util=ALL-UNNAMED",
            ],
        )

    def start(self) -> None:
        conf = self.conf_dir()
        conf.mkdir(exist_ok=True)
        (conf / "metastore-site.xml").write_text(site_xml(metastore_site()))
        (conf / "core-site.xml").write_text(site_xml(hdfs.core_site()))
        (conf / "log4j.properties").write_text(LOG4J_PROPERTIES)
        env = {"METASTORE_HOME": str(self.home)}
        if not self._schema_exists():
            process.run(
                self._java(
                    "org.apache.hadoop.hive.metastore.tools.MetastoreSchemaTool",
                    "-dbType",
                    "postgres",
                    "-initSchema",
                ),
                log=paths.log_dir() / "hive-schematool.log",
                env=env,
                cwd=self.home,
            )
        process.start(
            process.Daemon(
                DAEMON,
                self._java("org.apache.hadoop.hive.metastore.HiveMetaStore"),
                env=env,
                cwd=self.home,
            )
        )
        process.wait_until(
            lambda: self.health().healthy, what="hive metastore", logs=[DAEMON], timeout=120
        )

    def _schema_exists(self) -> bool:
        query = "SELECT 1 FROM information_schema.tables WHERE table_name = 'VERSION'"
        return postgres.Postgres().query(query, database=postgres.METASTORE_DB) == "1"

    def stop(self) -> None:
        process.stop(DAEMON)

    def health(self) -> Health:
        if process.running_pid(DAEMON) is None:
            return Health(False, "not running")
        try:
            databases = thrift_probe.get_all_databases(HOST, THRIFT_PORT)
        except OSError as error:
            return Health(False, f"get_all_databases failed: {error}")
        return Health(True, f"databases {','.join(databases)}; warehouse {WAREHOUSE_DIR}")

    def address(self) -> str:
        return METASTORE_URI

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_HIVE_METASTORE_URI": METASTORE_URI,
            "CRYPTOPIPE_HIVE_WAREHOUSE": WAREHOUSE_DIR,
        }
