"""Who may do what on Kafka: one SCRAM user per component of a pool (or dedicated pipeline), with
ACLs limited to its own topics, groups and transactional id (issue 27).

`grants` is pure: the topic names come from the topic contract (cryptopipe_schemas.topics), so a
role's ACLs name exactly the topics its client uses. `apply` writes a user and its ACLs through
the Kafka Admin API (the external provider's path; Strimzi's KafkaUser does the same for its
own provider).

- producer: writes (and creates, and reads back to resume) its symbols' trades topics and its
  source's dead-letter topic; writes under its transactional id.
- aggregator: reads the trades topics (Spark's generated consumer groups, by prefix); writes and
  creates the candles topics of its intervals.
- predictor: reads (and creates if missing) the candles topics of the model intervals, in its
  own group; writes and creates the forecasts topics.
- dashboard: only reads (and describes) the trades, candles and forecasts topics; it assigns
  partitions itself, so it needs no group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka.errors import NoError

from cryptopipe_schemas import topics

SPARK_SOURCE_GROUP_PREFIX = "spark-kafka-source-"  # the groups Spark's Kafka source makes up
# Topic operations a client that creates and configures its own topics needs (ensure_topics).
OWNED_TOPIC = ("WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS")
READ_TOPIC = ("READ", "DESCRIBE")


class Role(StrEnum):
    PRODUCER = "producer"
    AGGREGATOR = "aggregator"
    PREDICTOR = "predictor"
    DASHBOARD = "dashboard"


@dataclass(frozen=True)
class Scope:
    """The topics, group and transactional id one pool's (or pipeline's) clients use."""

    symbols: tuple[str, ...]
    intervals: tuple[str, ...]  # every candle interval of these symbols
    model_intervals: tuple[str, ...]  # the model intervals of these symbols' pipelines
    source: str  # the dead-letter topic's source name, e.g. binance
    transactional_id: str
    predictor_group: str


@dataclass(frozen=True, order=True)
class Grant:
    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str
    operation: str
    prefixed: bool = False


def _topic_grants(names: Iterable[str], operations: Sequence[str]) -> list[Grant]:
    return [Grant("TOPIC", name, op) for name in names for op in operations]


def grants(role: Role, scope: Scope) -> list[Grant]:
    """Every ACL (allow) of one role's user, sorted; nothing else is allowed."""
    trades = [topics.trades(s) for s in scope.symbols]
    candles = [topics.candles(i, s) for s in scope.symbols for i in scope.intervals]
    model_candles = [topics.candles(i, s) for s in scope.symbols for i in scope.model_intervals]
    forecasts = [topics.forecasts(s) for s in scope.symbols]
    out: list[Grant] = []
    if role is Role.PRODUCER:
        out += _topic_grants([*trades, topics.deadletter(scope.source)], OWNED_TOPIC)
        out += _topic_grants(trades, ("READ",))  # where it stopped, to resume after it
        out += [
            Grant("TRANSACTIONAL_ID", scope.transactional_id, op) for op in ("WRITE", "DESCRIBE")
        ]
    elif role is Role.AGGREGATOR:
        out += _topic_grants(trades, READ_TOPIC)
        out += [Grant("GROUP", SPARK_SOURCE_GROUP_PREFIX, "READ", prefixed=True)]
        out += _topic_grants(candles, OWNED_TOPIC)
    elif role is Role.PREDICTOR:
        # Created if missing, to subscribe before the first candle; configs are the aggregator's.
        out += _topic_grants(model_candles, (*READ_TOPIC, "CREATE"))
        out += [Grant("GROUP", scope.predictor_group, "READ")]
        out += _topic_grants(forecasts, OWNED_TOPIC)
    else:
        out += _topic_grants([*trades, *candles, *forecasts], READ_TOPIC)
    return sorted(set(out))


USER_PREFIX = "cryptopipe."


def user_name(role: Role, namespace: str, owner: str) -> str:
    """One user per role and pool (or dedicated pipeline): cryptopipe.<namespace>.<owner>.<role>"""
    return f"{USER_PREFIX}{namespace}.{owner}.{role.value}"


def acls(principal: str, given: Iterable[Grant]) -> list[ACL]:
    return [
        ACL(
            principal=f"User:{principal}",
            host="*",
            operation=ACLOperation[grant.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType[grant.resource],
                grant.name,
                ACLResourcePatternType.PREFIXED
                if grant.prefixed
                else ACLResourcePatternType.LITERAL,
            ),
        )
        for grant in given
    ]


class AccessError(RuntimeError):
    """Kafka refused a user or an ACL; the message says which and why."""


def apply(
    admin: KafkaAdminClient,
    user: str,
    password: str,
    given: Iterable[Grant],
    mechanism: str = "SCRAM-SHA-512",
) -> None:
    """Create or update `user`'s SCRAM credential and add its ACLs (idempotent: Kafka keeps one
    copy of an ACL that exists already)."""
    scram = ScramMechanism[mechanism.replace("-", "_")]
    refused = {
        name: error
        for name, error in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, scram, password)]
        ).items()
        if error
    }
    if refused:
        raise AccessError(f"Kafka refused the SCRAM credential of {user}: {refused}")
    result = admin.create_acls(acls(user, given))
    if result.get("failed"):
        raise AccessError(f"Kafka refused ACLs of {user}: {result['failed']}")


def _key(acl: ACL) -> tuple[str, str, str, str, str]:
    pattern = acl.resource_pattern
    return (
        acl.operation.name,
        acl.permission_type.name,
        pattern.resource_type.name,
        pattern.resource_name,
        pattern.pattern_type.name,
    )


def _failed(error: object) -> bool:
    """kafka-python answers NoError (the class or an instance) on success."""
    if error is None or error is NoError or isinstance(error, NoError):
        return False
    return bool(getattr(error, "errno", 1))


def revoke_others(admin: KafkaAdminClient, user: str, given: Iterable[Grant]) -> int:
    """Delete `user`'s ACLs that `given` no longer holds (a symbol that left its pool); how
    many were deleted."""
    wanted = {_key(acl) for acl in acls(user, given)}
    everything = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
    found, error = admin.describe_acls(
        ACLFilter(f"User:{user}", None, ACLOperation.ANY, ACLPermissionType.ANY, everything)
    )
    if _failed(error):
        raise AccessError(f"Kafka refused to describe the ACLs of {user}: {error}")
    stale = [acl for acl in found if _key(acl) not in wanted]
    if not stale:
        return 0
    filters = [
        ACLFilter(
            acl.principal,
            acl.host,
            acl.operation,
            acl.permission_type,
            ResourcePatternFilter(
                acl.resource_pattern.resource_type,
                acl.resource_pattern.resource_name,
                acl.resource_pattern.pattern_type,
            ),
        )
        for acl in stale
    ]
    for _, _, failure in admin.delete_acls(filters):
        if _failed(failure):
            raise AccessError(f"Kafka refused to delete an ACL of {user}: {failure}")
    return len(stale)


def remove(admin: KafkaAdminClient, user: str, mechanisms: Iterable[ScramMechanism]) -> int:
    """Delete every ACL of `user`, then its SCRAM credentials (ACLs first: a user without a
    credential but with ACLs is one that a later credential would inherit); how many ACLs."""
    revoked = revoke_others(admin, user, [])
    deletions = [UserScramCredentialDeletion(user, mechanism) for mechanism in mechanisms]
    if deletions:
        refused = {
            name: error
            for name, error in admin.alter_user_scram_credentials(deletions).items()
            if error
        }
        if refused:
            raise AccessError(f"Kafka refused to delete the SCRAM credential of {user}: {refused}")
    return revoked
