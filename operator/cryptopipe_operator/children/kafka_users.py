"""Each component's own Kafka user (config.kafka.manageUsers): its scope, password and Secret.

Pure. One SCRAM user per component of a pool or dedicated pipeline
(`cryptopipe.<namespace>.<owner>.<component>`, kafka_access.user_name), allowed only what its
client does (kafka_access.grants). The password is derived: HMAC-SHA256 of the user name under
the operator's key. So the operator never reads a Secret back: every pass computes the same
password and the same Secret, and a new key rotates every password at the next pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from cryptopipe_operator.children import aggregator, dashboard, pool, predictor, producer
from cryptopipe_operator.children.common import Owner, Pool, kafka_user_secret, labels
from cryptopipe_operator.kafka_access import Grant, Role, Scope, grants, user_name

ROLES = (Role.PRODUCER, Role.AGGREGATOR, Role.PREDICTOR, Role.DASHBOARD)
COMPONENT_OF_ROLE = {
    Role.PRODUCER: producer.COMPONENT,
    Role.AGGREGATOR: aggregator.COMPONENT,
    Role.PREDICTOR: predictor.COMPONENT,
    Role.DASHBOARD: dashboard.COMPONENT,
}


def owner_name(owner: Owner) -> str:
    return f"pool-{owner.name}" if isinstance(owner, Pool) else owner.name


def scope(owner: Owner) -> Scope:
    """The topics, group and transactional id of the owner's clients."""
    if isinstance(owner, Pool):
        specs = [member.spec for member in owner.members]
        transactional_id = pool.transactional_id(owner)
        group = pool.predictor_group(owner)
    else:
        specs = [owner.spec]
        transactional_id = producer.transactional_id(owner)
        group = predictor.group_id(owner)
    return Scope(
        symbols=tuple(sorted({spec.symbol for spec in specs})),
        intervals=tuple(sorted({i for spec in specs for i in spec.intervals})),
        model_intervals=tuple(sorted({spec.model.interval for spec in specs})),
        source=owner.spec.source.kind.value,
        transactional_id=transactional_id,
        predictor_group=group,
    )


def password(key: bytes, user: str) -> str:
    digest = hmac.new(key, user.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def user(owner: Owner, role: Role) -> str:
    return user_name(role, owner.namespace, owner_name(owner))


def role_grants(owner: Owner, role: Role) -> list[Grant]:
    return grants(role, scope(owner))


def secret(owner: Owner, role: Role, key: bytes) -> dict[str, Any]:
    """The Secret the role's pods read their username and password from."""
    component = COMPONENT_OF_ROLE[role]
    name = user(owner, role)
    values = {"username": name, "password": password(key, name)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": kafka_user_secret(owner, component),
            "namespace": owner.namespace,
            "labels": labels(owner, component),
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }
