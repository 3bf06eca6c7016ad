"""How every Kafka client of a pipeline authenticates: one setting, read from the environment.

The operator puts the platform's Kafka credentials into each pod's environment from a Secret
(`CRYPTOPIPE_KAFKA_*`); the local mode and the tests set the same variables. Every client, the
kafka-python ones (producer, predictor, dashboard, admin calls) and Spark's source and sink,
takes its settings from here, so none can be left unauthenticated by accident, and each says at
start how it connects.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "CRYPTOPIPE_KAFKA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Java's login module per mechanism, for Spark's Kafka clients (sasl.jaas.config).
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


class KafkaAuthError(ValueError):
    """The environment's Kafka security settings are incomplete or unknown; says which."""


@dataclass(frozen=True)
class KafkaAuth:
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # PEM of the CA that signed the brokers' certificates

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """What a client logs at start: never the password."""
        if not self.uses_sasl and not self.uses_tls:
            return "PLAINTEXT: unauthenticated and unencrypted"
        who = f" as {self.username} ({self.sasl_mechanism})" if self.uses_sasl else ""
        return f"{self.security_protocol}{who}"

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and admin client."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.uses_tls and self.ca_file:
            config["ssl_cafile"] = self.ca_file
        return config

    def spark_options(self) -> dict[str, str]:
        """`kafka.`-prefixed options for Spark's Kafka source and sink (driver and executors)."""
        options = {"kafka.security.protocol": self.security_protocol}
        if self.uses_sasl:
            assert self.sasl_mechanism is not None  # checked by from_env
            module = LOGIN_MODULES[self.sasl_mechanism]
            options |= {
                "kafka.sasl.mechanism": self.sasl_mechanism,
                "kafka.sasl.jaas.config": (
                    f'{module} required username="{_jaas_quoted(self.username)}" '
                    f'password="{_jaas_quoted(self.password)}";'
                ),
            }
        if self.uses_tls and self.ca_file:
            options |= {
                "kafka.ssl.truststore.type": "PEM",
                "kafka.ssl.truststore.location": self.ca_file,
            }
        return options


def _jaas_quoted(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace('"', '\\"')


def from_env(env: Mapping[str, str]) -> KafkaAuth:
    """The settings in `env` (CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _USERNAME,
    _PASSWORD, _CA_FILE); none set: PLAINTEXT. Incomplete settings are an error, never a
    silent fall back to an unauthenticated connection."""

    def get(name: str) -> str | None:
        return env.get(PREFIX + name) or None

    protocol = (get("SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise KafkaAuthError(
            f"{PREFIX}SECURITY_PROTOCOL is {protocol!r}; one of {', '.join(PROTOCOLS)}"
        )
    auth = KafkaAuth(
        security_protocol=protocol,
        sasl_mechanism=(get("SASL_MECHANISM") or "").upper() or None,
        username=get("USERNAME"),
        password=get("PASSWORD"),
        ca_file=get("CA_FILE"),
    )
    if auth.uses_sasl:
        missing = [
            PREFIX + name
            for name, value in (
                ("SASL_MECHANISM", auth.sasl_mechanism),
                ("USERNAME", auth.username),
                ("PASSWORD", auth.password),
            )
            if not value
        ]
        if missing:
            raise KafkaAuthError(f"{protocol} needs {', '.join(missing)}")
        if auth.sasl_mechanism not in MECHANISMS:
            raise KafkaAuthError(
                f"{PREFIX}SASL_MECHANISM is {auth.sasl_mechanism!r}; one of {', '.join(MECHANISMS)}"
            )
    return auth


@functools.cache
def current() -> KafkaAuth:
    """This process's settings, read once from its environment."""
    return from_env(os.environ)


def client_config() -> dict[str, Any]:
    """This process's kafka-python security arguments."""
    return current().kafka_python()


def spark_options() -> dict[str, str]:
    """This process's security options for Spark's Kafka source and sink."""
    return current().spark_options()
