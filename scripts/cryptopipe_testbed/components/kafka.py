"""Apache Kafka, single node in KRaft mode (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import secrets
import uuid
from pathlib import Path

from cryptopipe_testbed import jvm, maven, paths, process, versions
from cryptopipe_testbed.components.base import Component, Health
from cryptopipe_testbed.components.kube import NODE_IP

HOST = "127.0.0.1"
BROKER_PORT = 19092
CONTROLLER_PORT = 19093
# Pods on the real node reach the broker through the node's address, which exists only while
# the node is up; their listener binds every address so Kafka need not restart when it appears.
POD_LISTENER_ADDRESS = NODE_IP
# SASL (SCRAM) listeners, for this machine and for pods: the only ones the authorizer holds to
# ACLs, and the only one pods get. The PLAINTEXT one, on loopback only (its principal,
# ANONYMOUS, is a super user), serves the tests that are not about security and the admin calls
# that create users and ACLs.
SCRAM_PORT = 19095
POD_SCRAM_PORT = 19096
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# A super user for the SCRAM listeners, as a managed Kafka's admin is: the operator creates
# users and ACLs as this one (its credential is made by the tests, over PLAINTEXT).
SCRAM_ADMIN = "cryptopipe-admin"
DAEMON = "kafka"
READY_LINE = b"Kafka Server started"

LOG4J2_CONFIG = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
"""


def server_properties(data_dir: Path) -> str:
    # Topic auto-creation is off: our code creates its topics, as a Strimzi KafkaTopic would.
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{CONTROLLER_PORT}",
        "listeners": (
            f"PLAINTEXT://{HOST}:{BROKER_PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT},"
            f"SCRAM://{HOST}:{SCRAM_PORT},PODS_SCRAM://0.0.0.0:{POD_SCRAM_PORT}"
        ),
        "advertised.listeners": (
            f"PLAINTEXT://{HOST}:{BROKER_PORT},SCRAM://{HOST}:{SCRAM_PORT},"
            f"PODS_SCRAM://{POD_LISTENER_ADDRESS}:{POD_SCRAM_PORT}"
        ),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "SCRAM:SASL_PLAINTEXT,PODS_SCRAM:SASL_PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        # The broker side of SCRAM needs a (credential-less) login module per listener.
        **{
            f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
            for listener in ("scram", "pods_scram")
            for mechanism in SCRAM_MECHANISMS
        },
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:ANONYMOUS;User:{SCRAM_ADMIN}",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class Kafka(Component):
    name = "kafka"
    version = versions.KAFKA

    @property
    def lib(self) -> Path:
        return paths.component_cache("kafka", self.version) / "lib"

    def install(self) -> None:
        maven.copy_dependencies(
            "kafka.xml",
            self.lib,
            {"kafka.version": self.version, "log4j.version": versions.LOG4J},
        )

    def _java(self, main: str, *args: str) -> list[str]:
        log4j_config = paths.component_run(self.name) / "log4j2.xml"
        return jvm.java_command(
            [f"{self.lib}/*"],
            main,
            *args,
            max_heap="512m",
            options=[f"-Dlog4j2.configurationFile={log4j_config}"],
        )

    def start(self) -> None:
        run = paths.component_run(self.name)
        data = run / "data"
        config = run / "server.properties"
        config.write_text(server_properties(data))
        (run / "log4j2.xml").write_text(LOG4J2_CONFIG)
        if not (data / "meta.properties").exists():
            process.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(config),
                    "--standalone",
                ),
                log=paths.log_dir() / "kafka-format.log",
            )
        process.start(process.Daemon(DAEMON, self._java("kafka.Kafka", str(config))))
        process.wait_until(lambda: self.health().healthy, what="kafka", logs=[DAEMON], timeout=90)

    def stop(self) -> None:
        process.stop(DAEMON)

    def health(self) -> Health:
        if process.running_pid(DAEMON) is None:
            return Health(False, "not running")
        if not process.port_open(HOST, BROKER_PORT):
            return Health(False, "broker port closed")
        if READY_LINE not in process.log_path(DAEMON).read_bytes():
            return Health(False, "starting")
        return Health(True, "broker and controller up")

    def address(self) -> str:
        return f"{HOST}:{BROKER_PORT}"

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_KAFKA_BOOTSTRAP": self.address(),
            "CRYPTOPIPE_KAFKA_SCRAM_BOOTSTRAP": f"{HOST}:{SCRAM_PORT}",
            "CRYPTOPIPE_KAFKA_POD_SCRAM_BOOTSTRAP": f"{POD_LISTENER_ADDRESS}:{POD_SCRAM_PORT}",
            "CRYPTOPIPE_KAFKA_SCRAM_ADMIN": SCRAM_ADMIN,
            "CRYPTOPIPE_KAFKA_SCRAM_ADMIN_PASSWORD": scram_admin_password(),
        }


def scram_admin_password() -> str:
    """The SCRAM super user's password, one per run folder: every test that makes the user
    (over PLAINTEXT, as ANONYMOUS) gives it the same password, so tests running side by side
    (the kind lane and the others) never log each other's operators out."""
    path = paths.component_run("kafka") / "scram-admin-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
