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
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from cryptopipe_operator.children import aggregator, dashboard, pool, predictor, producer
from cryptopipe_operator.children.common import Owner, Pool, kafka_user_secret, labels
from cryptopipe_operator.kafka_access import USER_PREFIX, Grant, Role, Scope, grants, user_name
from cryptopipe_operator.pools import shared_pool
from cryptopipe_schemas.spec import SpecError, parse_spec

ROLES = (Role.PRODUCER, Role.AGGREGATOR, Role.PREDICTOR, Role.DASHBOARD)
COMPONENT_OF_ROLE = {
    Role.PRODUCER: producer.COMPONENT,
    Role.AGGREGATOR: aggregator.COMPONENT,
    Role.PREDICTOR: predictor.COMPONENT,
    Role.DASHBOARD: dashboard.COMPONENT,
}


POOL_OWNER_PREFIX = "pool-"


def owner_name(owner: Owner) -> str:
    return f"{POOL_OWNER_PREFIX}{owner.name}" if isinstance(owner, Pool) else owner.name


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


def parse_user(name: str) -> tuple[str, str, Role] | None:
    """(namespace, owner, role) of a user this operator names; None for anyone else's. A
    namespace has no dots; a pipeline's name may."""
    prefix, _, rest = name.partition(".")
    namespace, _, rest = rest.partition(".")
    owner, _, role = rest.rpartition(".")
    if f"{prefix}." != USER_PREFIX or not namespace or not owner:
        return None
    try:
        return namespace, owner, Role(role)
    except ValueError:
        return None


def orphan_users(
    users: Iterable[str],
    pipelines: Iterable[Mapping[str, Any]],
    namespaces: Collection[str],
) -> list[str]:
    """The users whose pipeline or pool is gone, among those of `namespaces` (the operator's
    own; `pipelines` are every pipeline there). Kept: a user named after any existing
    pipeline, whatever its spec says, and a pool's users while a valid pipeline shares it; an
    invalid pipeline keeps every pool user of its namespace, since it may be a member whose
    spec a person is fixing."""
    kept: set[tuple[str, str]] = set()
    unsure: set[str] = set()  # namespaces with an invalid pipeline
    for body in pipelines:
        meta = body["metadata"]
        namespace = meta["namespace"]
        kept.add((namespace, meta["name"]))
        try:
            pool_name = shared_pool(parse_spec(body.get("spec") or {}))
        except SpecError:
            unsure.add(namespace)
            continue
        if pool_name is not None:
            kept.add((namespace, f"{POOL_OWNER_PREFIX}{pool_name}"))
    gone = []
    for user_name_ in users:
        parsed = parse_user(user_name_)
        if parsed is None:
            continue
        namespace, owner, _ = parsed
        if namespace not in namespaces:
            continue
        if (namespace, owner) in kept:
            continue
        if owner.startswith(POOL_OWNER_PREFIX) and namespace in unsure:
            continue
        gone.append(user_name_)
    return sorted(gone)
