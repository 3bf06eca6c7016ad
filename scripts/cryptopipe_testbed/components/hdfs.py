"""HDFS: one NameNode and one DataNode from the Hadoop jars, with WebHDFS on."""

from __future__ import annotations

import json
from pathlib import Path

from cryptopipe_testbed import jvm, maven, paths, process, versions
from cryptopipe_testbed.components.base import Component, Health
from cryptopipe_testbed.hadoop_conf import LOG4J_PROPERTIES, site_xml

HOST = "127.0.0.1"
NAMENODE_RPC_PORT = 18020
NAMENODE_HTTP_PORT = 19870
DATANODE_PORT = 19866
DATANODE_HTTP_PORT = 19864
DATANODE_IPC_PORT = 19867
NAMENODE = "hdfs-namenode"
DATANODE = "hdfs-datanode"
FS_URL = f"hdfs://{HOST}:{NAMENODE_RPC_PORT}"
WEBHDFS_URL = f"http://{HOST}:{NAMENODE_HTTP_PORT}"


def hadoop_lib(version: str = versions.HADOOP) -> Path:
    return paths.component_cache("hadoop", version) / "lib"


def core_site() -> dict[str, str]:
    return {
        "fs.defaultFS": FS_URL,
        # Tests and jobs act as the local user over WebHDFS; no Kerberos on the test bed.
        "hadoop.http.staticuser.user": "root",
        "hadoop.proxyuser.root.hosts": "*",
        "hadoop.proxyuser.root.groups": "*",
    }


def hdfs_site(run: Path) -> dict[str, str]:
    return {
        "dfs.namenode.name.dir": str(run / "name"),
        "dfs.datanode.data.dir": str(run / "data"),
        "dfs.replication": "1",
        "dfs.permissions.enabled": "false",
        "dfs.webhdfs.enabled": "true",
        "dfs.namenode.rpc-address": f"{HOST}:{NAMENODE_RPC_PORT}",
        "dfs.namenode.http-address": f"{HOST}:{NAMENODE_HTTP_PORT}",
        "dfs.datanode.address": f"{HOST}:{DATANODE_PORT}",
        "dfs.datanode.http.address": f"{HOST}:{DATANODE_HTTP_PORT}",
        "dfs.datanode.ipc.address": f"{HOST}:{DATANODE_IPC_PORT}",
        # WebHDFS redirects clients to the DataNode by this name: keep them on loopback.
        "dfs.datanode.hostname": HOST,
        "dfs.datanode.use.datanode.hostname": "true",
        "dfs.client.use.datanode.hostname": "true",
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.namenode.safemode.extension": "0",
        "dfs.namenode.safemode.min.datanodes": "1",
        "dfs.heartbeat.interval": "1",
        # The DataNode's own client (WebHDFS writes): a file close that beats the block report
        # is retried after 10 ms, not Hadoop's 400 ms (see cryptopipe_jobs.spark_session).
        "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "10",
        "dfs.client.block.write.locateFollowingBlock.retries": "10",
    }


class Hdfs(Component):
    name = "hdfs"
    version = versions.HADOOP

    def install(self) -> None:
        maven.copy_dependencies(
            "hadoop.xml", hadoop_lib(self.version), {"hadoop.version": self.version}
        )

    def conf_dir(self) -> Path:
        return paths.component_run(self.name) / "conf"

    def _write_conf(self) -> None:
        run = paths.component_run(self.name)
        conf = self.conf_dir()
        conf.mkdir(exist_ok=True)
        (conf / "core-site.xml").write_text(site_xml(core_site()))
        (conf / "hdfs-site.xml").write_text(site_xml(hdfs_site(run)))
        (conf / "log4j.properties").write_text(LOG4J_PROPERTIES)

    def _java(self, main: str, *args: str) -> list[str]:
        return jvm.java_command(
            [self.conf_dir(), f"{hadoop_lib(self.version)}/*"],
            main,
            *args,
            options=[
                # Without it every WebHDFS call answers 500 on Java 17.
                "--add-opens=java.base/java.lang=ALL-UNNAMED",
                f"-Dhadoop.log.dir={paths.log_dir()}",
                "-Dhadoop.root.logger=INFO,console",
            ],
        )

    def start(self) -> None:
        run = paths.component_run(self.name)
        self._write_conf()
        if not (run / "name" / "current" / "VERSION").exists():
            process.run(
                self._java(
                    "org.apache.hadoop.hdfs.server.namenode.NameNode",
                    "-format",
                    "-nonInteractive",
                    "-force",
                ),
                log=paths.log_dir() / "hdfs-format.log",
            )
        process.start(
            process.Daemon(NAMENODE, self._java("org.apache.hadoop.hdfs.server.namenode.NameNode"))
        )
        process.start(
            process.Daemon(DATANODE, self._java("org.apache.hadoop.hdfs.server.datanode.DataNode"))
        )
        process.wait_until(
            lambda: self.health().healthy, what="hdfs", logs=[NAMENODE, DATANODE], timeout=120
        )

    def stop(self) -> None:
        process.stop(DATANODE)
        process.stop(NAMENODE)

    def health(self) -> Health:
        for daemon in (NAMENODE, DATANODE):
            if process.running_pid(daemon) is None:
                return Health(False, f"{daemon} not running")
        state = _jmx_bean("Hadoop:service=NameNode,name=FSNamesystemState")
        info = _jmx_bean("Hadoop:service=NameNode,name=NameNodeInfo")
        if state is None or info is None:
            return Health(False, "namenode web not answering")
        live = int(str(state.get("NumLiveDataNodes", 0)))
        if state.get("FSState") != "Operational" or live < 1:
            return Health(False, f"FSState={state.get('FSState')} live datanodes={live}")
        if info.get("Safemode"):
            return Health(False, "namenode in safe mode")
        return Health(True, f"{live} live datanode, WebHDFS {WEBHDFS_URL}")

    def address(self) -> str:
        return FS_URL

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_HDFS_URL": FS_URL,
            "CRYPTOPIPE_WEBHDFS_URL": WEBHDFS_URL,
        }


def _jmx_bean(query: str) -> dict[str, object] | None:
    body = process.http_get(f"{WEBHDFS_URL}/jmx?qry={query}")
    if body is None:
        return None
    beans = json.loads(body).get("beans", [])
    return beans[0] if beans else None
