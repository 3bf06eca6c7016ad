"""The operator's side of config.kafka.manageUsers: each owner's Kafka users, their ACLs and the
Secrets their pods read, written when they change (I/O at the edge of children.kafka_users).

The operator connects to Kafka as the admin its own environment names (CRYPTOPIPE_KAFKA_*, the
same settings every client reads) and derives passwords under CRYPTOPIPE_KAFKA_USER_KEY. What it
wrote is remembered per process, by digest: at rest a pass writes nothing, to Kafka or to the
API server; a restarted operator writes each once again (the same values), and so puts back a
Secret or credential someone deleted. ACLs a user no longer needs (a symbol that left its pool)
are deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from kafka.admin import KafkaAdminClient

from cryptopipe_operator import kafka_access
from cryptopipe_operator.children import SECRET, kafka_users
from cryptopipe_operator.children.common import Owner
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas import kafka_auth

log = logging.getLogger(__name__)
USER_KEY_VARIABLE = "CRYPTOPIPE_KAFKA_USER_KEY"
Emit = Callable[[str, str, str], None]


class Applier(Protocol):
    def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]: ...


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class KafkaUserManager:
    def __init__(
        self,
        config: PlatformConfig,
        key: bytes,
        admin_factory: Callable[[], KafkaAdminClient],
    ) -> None:
        self._mechanism = config.kafka.sasl_mechanism
        self._key = key
        self._admin_factory = admin_factory
        self._admin: KafkaAdminClient | None = None
        self._users: dict[str, str] = {}
        self._secrets: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # reconciles run in parallel; one admin client

    @classmethod
    def from_environment(
        cls, config: PlatformConfig, environ: Mapping[str, str] = os.environ
    ) -> KafkaUserManager | None:
        """None unless the platform asks the operator to manage users; then its key and admin
        settings must be there, or the operator does not start."""
        if not config.kafka.manage_users:
            return None
        key = environ.get(USER_KEY_VARIABLE, "")
        if len(key) < 16:
            raise ValueError(
                f"kafka.manageUsers needs {USER_KEY_VARIABLE}: at least 16 characters the "
                "operator derives every user's password from (the chart takes it from "
                "platform.kafka.adminSecret's `user-key`)"
            )
        settings = kafka_auth.from_env(environ)
        if not settings.uses_sasl:
            raise ValueError(
                "kafka.manageUsers: the operator's own CRYPTOPIPE_KAFKA_* settings must name "
                "the admin it creates users as (SASL), not " + settings.security_protocol
            )

        def admin() -> KafkaAdminClient:
            return KafkaAdminClient(
                bootstrap_servers=config.kafka.bootstrap_servers,
                client_id="cryptopipe-operator",
                **settings.kafka_python(),
            )

        log.info("kafka users managed", extra={"kafka_security": settings.describe()})
        return cls(config, key.encode(), admin)

    def _client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = self._admin_factory()
        return self._admin

    def ensure(
        self,
        owner: Owner,
        references: Sequence[Mapping[str, Any]],
        kube: Applier,
        emit: Emit,
    ) -> list[str]:
        """Every role's user, ACLs and Secret as they should be; what was written."""
        written: list[str] = []
        with self._lock:
            for role in kafka_users.ROLES:
                user = kafka_users.user(owner, role)
                password = kafka_users.password(self._key, user)
                given = kafka_users.role_grants(owner, role)
                digest = _digest([password, self._mechanism, given])
                if self._users.get(user) != digest:
                    try:
                        admin = self._client()
                        kafka_access.apply(admin, user, password, given, self._mechanism)
                        revoked = kafka_access.revoke_others(admin, user, given)
                    except Exception:
                        self._close()  # a fresh connection next time
                        raise
                    self._users[user] = digest
                    written.append(f"KafkaUser/{user}")
                    emit(
                        "Normal",
                        "KafkaUserReady",
                        f"Kafka user {user}: {len(given)} ACLs, {revoked} revoked",
                    )
                manifest = kafka_users.secret(owner, role, self._key)
                manifest["metadata"]["ownerReferences"] = [dict(r) for r in references]
                name = manifest["metadata"]["name"]
                secret_digest = _digest(manifest)
                if self._secrets.get((owner.namespace, name)) != secret_digest:
                    kube.apply(SECRET.path(owner.namespace, name), manifest)
                    self._secrets[(owner.namespace, name)] = secret_digest
                    written.append(f"Secret/{name}")
        return written

    def sweep(
        self,
        live_pipelines: Callable[[], list[dict[str, Any]]],
        namespaces: Collection[str],
    ) -> list[str]:
        """Delete the users (ACLs, then credentials) of pools and pipelines that are gone, in
        `namespaces`; the users deleted. Kafka's users are listed
        before the pipelines: a user made after the listing belongs to a pipeline the listing
        holds, so a pipeline created meanwhile never loses its new user."""
        with self._lock:
            try:
                admin = self._client()
                existing = admin.describe_user_scram_credentials()
                gone = kafka_users.orphan_users(existing, live_pipelines(), namespaces)
                for user in gone:
                    mechanisms = [c["mechanism"] for c in existing[user]["credential_infos"]]
                    kafka_access.remove(admin, user, mechanisms)
                    self._users.pop(user, None)
            except Exception:
                self._close()
                raise
        return gone

    def _close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            finally:
                self._admin = None
