"""Who is in a pool, and who may not be (pure: pipeline bodies in, a Pool and problems out).

A pool is every pipeline of one namespace with `isolation: shared` and the same `spec.pool`.
The pool's settings are its oldest pipeline's (creation time, then name): a pipeline whose sinks
or source kind differ cannot share its producer and aggregator, and is told so in its status,
while its pool-mates go on. So is the newer of two pipelines for one symbol (see
reconcile.symbol_conflicts). Suspended pipelines stay in the pool (they keep its children alive)
but are not served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptopipe_operator.children.common import Pipeline, Pool
from cryptopipe_schemas.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    CryptoPipelineSpec,
    Isolation,
    SpecError,
    parse_spec,
    to_mapping,
)


@dataclass(frozen=True)
class Member:
    body: Mapping[str, Any]
    spec: CryptoPipelineSpec

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def age_key(self) -> tuple[str, str]:
        return (self.body["metadata"].get("creationTimestamp", ""), self.name)


def shared_pool(spec: CryptoPipelineSpec) -> str | None:
    return spec.pool if spec.isolation is Isolation.SHARED else None


def candidates(namespace: str, pool: str, bodies: Sequence[Mapping[str, Any]]) -> list[Member]:
    """Valid, live pipelines of the namespace that ask for the pool, oldest first."""
    found = []
    for body in bodies:
        meta = body["metadata"]
        if meta.get("namespace") != namespace or meta.get("deletionTimestamp"):
            continue
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError:
            continue
        if shared_pool(spec) == pool:
            found.append(Member(body, spec))
    return sorted(found, key=Member.age_key)


def disagreement(member: Member, oldest: Member, pool: str) -> list[str]:
    """Why `member` cannot share the pool whose settings are `oldest`'s (empty: it can)."""
    problems = []
    where = (
        f"pool {pool} (whose settings are those of its oldest pipeline, {oldest.name}); "
        "match them, or set spec.pool to another pool or spec.isolation to dedicated"
    )
    if to_mapping(member.spec.sinks) != to_mapping(oldest.spec.sinks):
        problems.append(f"spec.sinks: differ from those of {where}")
    if member.spec.source.kind != oldest.spec.source.kind:
        problems.append(
            f"spec.source.kind: {member.spec.source.kind.value} differs from "
            f"{oldest.spec.source.kind.value} in {where}"
        )
    return problems


@dataclass(frozen=True)
class PoolView:
    pool: Pool
    owners: tuple[Member, ...]  # every pipeline that keeps the pool's children alive
    problems: dict[str, list[str]]  # pipeline name -> why it is not in the pool


def pool_view(
    namespace: str,
    pool: str,
    bodies: Sequence[Mapping[str, Any]],
    excluded: Mapping[str, list[str]],
) -> PoolView | None:
    """The pool as it stands, or None when no pipeline asks for it. `excluded` maps pipelines
    that may not join for another reason (a symbol another pipeline has) to that reason."""
    found = [m for m in candidates(namespace, pool, bodies) if m.name not in excluded]
    if not found:
        return None
    oldest = found[0]
    problems = {m.name: disagreement(m, oldest, pool) for m in found}
    owners = tuple(m for m in found if not problems[m.name])
    served = tuple(
        Pipeline(m.name, namespace, m.spec) for m in sorted(owners, key=lambda m: m.name)
        if not m.spec.suspend
    )  # fmt: skip
    return PoolView(
        Pool(pool, namespace, oldest.spec, served),
        owners,
        {name: found_problems for name, found_problems in problems.items() if found_problems},
    )


def owner_reference(name: str, uid: str, controller: bool) -> dict[str, Any]:
    """A reference to one CryptoPipeline; a controller blocks its owner's deletion until the
    garbage collector has removed the child."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def owner_references(owners: Sequence[Member]) -> list[dict[str, Any]]:
    """Every owner, none the controller: garbage collection deletes a pool's children once the
    last of them is gone, and never before."""
    return [
        owner_reference(member.name, member.uid, controller=False)
        for member in sorted(owners, key=lambda m: m.uid)
    ]
