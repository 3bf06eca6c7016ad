"""One reconcile of one pipeline: read children, put back what drifted, prune, write status.

Idempotent and level-triggered: it compares what is with what should be and writes only the
difference, so running it again at steady state reads but never writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptopipe_operator import children, drift, pools, status
from cryptopipe_operator.children import (
    CHILD_KINDS,
    CONFIG_MAP,
    DEPLOYMENT,
    INGRESS,
    JOB,
    NETWORK_POLICY,
    POD,
    SERVICE,
    SPARK_APPLICATION,
    Kind,
    aggregator,
    dashboard,
    network_policy,
    pool,
    predictor,
    producer,
    training,
)
from cryptopipe_operator.children.common import (
    COMPONENT_LABEL,
    MANAGED_BY,
    PIPELINE_LABEL,
    POOL_LABEL,
    Pipeline,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_operator.kube import ApiError, Kube
from cryptopipe_operator.scrape import (
    last_forecast_time,
    newest_trade_timestamp,
    read_metrics,
    rfc3339,
)
from cryptopipe_operator.user_manager import KafkaUserManager
from cryptopipe_schemas.crd import API_PATH as CRD_API_PATH
from cryptopipe_schemas.crd import PLURAL, pipeline_path
from cryptopipe_schemas.spec import (
    KIND,
    CryptoPipelineSpec,
    Isolation,
    SpecError,
    parse_spec,
)

log = logging.getLogger(__name__)

REQUIRED_CRDS = {
    "kafkatopics.kafka.strimzi.io": "Strimzi",
    "kafkas.kafka.strimzi.io": "Strimzi",
    "sparkapplications.sparkoperator.k8s.io": "the Kubeflow spark-operator",
}
Emit = Callable[[str, str, str], None]  # (type, reason, message) -> a Kubernetes Event
POOL_KINDS = (CONFIG_MAP, SERVICE, DEPLOYMENT, SPARK_APPLICATION, INGRESS)


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_written: bool = False
    phase: str = ""
    status: dict[str, Any] = field(default_factory=dict)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def symbol_conflicts(body: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Another pipeline in the namespace, created earlier, already handles this symbol."""
    meta = body["metadata"]
    symbol = body.get("spec", {}).get("symbol")
    mine = (meta.get("creationTimestamp", ""), meta["name"])
    for other in siblings:
        theirs = (other["metadata"].get("creationTimestamp", ""), other["metadata"]["name"])
        if (
            other["metadata"]["name"] != meta["name"]
            and other.get("spec", {}).get("symbol") == symbol
            and theirs < mine
        ):
            return [
                f"spec.symbol: {symbol} is already handled by CryptoPipeline "
                f"{other['metadata']['name']} in this namespace (they would share its Kafka "
                "topics); delete one of them or pick another symbol"
            ]
    return []


def check_dependencies(kube: Kube, config: PlatformConfig) -> status.Dependencies:
    missing: list[str] = []
    crds = dict(REQUIRED_CRDS)
    if config.kafka.mode != "strimzi":
        crds = {k: v for k, v in crds.items() if "strimzi" not in k}
    for crd, owner in crds.items():
        if kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}") is None:
            missing.append(f"CRD {crd} is not installed (install {owner})")
    if config.kafka.mode == "strimzi" and not any("kafkas." in m for m in missing):
        ns, name = config.kafka_namespace, config.kafka.cluster
        kafka = kube.get(f"/apis/kafka.strimzi.io/v1/namespaces/{ns}/kafkas/{name}")
        if kafka is None:
            missing.append(f"Kafka cluster {ns}/{name} does not exist")
        else:
            ready = [
                c
                for c in kafka.get("status", {}).get("conditions", []) or []
                if c.get("type") == "Ready"
            ]
            if not ready or ready[0].get("status") != "True":
                detail = ready[0].get("message", "") if ready else "no Ready condition yet"
                missing.append(f"Kafka cluster {ns}/{name} is not ready: {detail}".rstrip(": "))
    return status.Dependencies(tuple(missing))


def _freshness(
    kube: Kube, pipeline: Pipeline, service: str, config: PlatformConfig, producer_ready: bool
) -> tuple[float | None, str, str]:
    """The newest trade's age, why it is unknown (or ""), and its time (RFC 3339)."""
    if not config.freshness.enabled:
        return None, "data freshness checks are turned off in the operator's configuration", ""
    if not producer_ready:
        return None, "the producer is not available", ""
    try:
        text = read_metrics(kube, pipeline.namespace, service, config.freshness.timeout_seconds)
    except Exception as error:
        return None, f"could not read the producer's metrics: {error}"[:300], ""
    newest = newest_trade_timestamp(text, pipeline.spec.symbol)
    if newest is None:
        return None, "the producer has not published a trade yet", ""
    return max(0.0, time.time() - newest), "", rfc3339(newest)


def _last_forecast(
    kube: Kube, pipeline: Pipeline, service: str, config: PlatformConfig, predictor_ready: bool
) -> str | None:
    """The predictor's newest forecast time; None (the status keeps the last one) if unknown."""
    if not config.freshness.enabled or not predictor_ready:
        return None
    try:
        text = read_metrics(kube, pipeline.namespace, service, config.freshness.timeout_seconds)
    except Exception as error:
        log.info("predictor metrics unreadable: %s", error, extra={"pipeline": pipeline.name})
        return None
    return last_forecast_time(text, pipeline.spec.symbol)


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj.get("metadata", {}).get("ownerReferences", []) or []
    )


def _job_finished(obj: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions", []) or []
    )


def pool_of(
    namespace: str, pool_name: str, body: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]]
) -> pools.PoolView | None:
    """The pool `body` asks for, from the newest copies: `body` itself and its siblings."""
    uid = body["metadata"]["uid"]
    bodies = [body, *(b for b in siblings if b["metadata"]["uid"] != uid)]
    excluded = {
        b["metadata"]["name"]: found for b in bodies if (found := symbol_conflicts(b, bodies))
    }
    return pools.pool_view(namespace, pool_name, bodies, excluded)


def _owner_uids(obj: Mapping[str, Any]) -> set[str]:
    return {
        ref["uid"]
        for ref in obj.get("metadata", {}).get("ownerReferences", []) or []
        if ref.get("kind") == KIND
    }


def _pool_drift(manifest: Mapping[str, Any], have: Mapping[str, Any] | None) -> list[str]:
    """Drift, plus what drift.drifted does not call drift for a pool child: an owner or a
    member more than wanted (one that left)."""
    paths = drift.drifted(dict(manifest), dict(have) if have is not None else None)
    if have is None:
        return paths
    if _owner_uids(manifest) != _owner_uids(have):
        paths.append(".metadata.ownerReferences")
    if manifest["kind"] == CONFIG_MAP.kind and set(manifest.get("data", {})) != set(
        have.get("data", {}) or {}
    ):
        paths.append(".data")
    return paths


def _pool_live(kube: Kube, namespace: str, pool_name: str) -> dict[tuple[str, str], dict[str, Any]]:
    selector = f"{POOL_LABEL}={pool_name},app.kubernetes.io/managed-by={MANAGED_BY}"
    return {
        (kind.kind, obj["metadata"]["name"]): obj
        for kind in POOL_KINDS
        for obj in kube.list(kind.path(namespace), selector)
    }


def sync_shared(
    namespace: str,
    desired: Sequence[dict[str, Any]],
    references: list[dict[str, Any]],
    live: dict[tuple[str, str], dict[str, Any]],
    kinds: Mapping[str, Kind],
    kube: Kube,
    emit: Emit,
    outcome: Outcome,
    noun: str = "",
) -> None:
    """Children several pipelines own (a pool's, a namespace's) as `desired`, each with these
    owners; `live` (keyed by kind and name) is updated to what is there now."""
    for manifest in desired:
        manifest["metadata"]["ownerReferences"] = references
        key = (manifest["kind"], manifest["metadata"]["name"])
        paths = _pool_drift(manifest, live.get(key))
        if not paths:
            continue
        live[key] = kube.apply(kinds[key[0]].path(namespace, key[1]), manifest)
        verb = "Created" if paths == ["(missing)"] else "Restored"
        outcome.applied.append(f"{key[0]}/{key[1]}")
        emit("Normal", verb, f"{verb.lower()} {noun}{key[0]} {key[1]} ({', '.join(paths[:3])})")
    wanted = {(m["kind"], m["metadata"]["name"]) for m in desired}
    for key in sorted(k for k in live if k not in wanted):
        kube.delete(kinds[key[0]].path(namespace, key[1]))
        del live[key]
        outcome.deleted.append(f"{key[0]}/{key[1]}")


def reconcile_pool(
    view: pools.PoolView,
    kube: Kube,
    config: PlatformConfig,
    emit: Emit,
    outcome: Outcome,
    users: KafkaUserManager | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Put the pool's shared children where they should be; return them as they are now.

    Every member's reconcile runs this with the same inputs, so it is idempotent: at rest it
    reads but writes nothing. A pool whose pipelines are all suspended has no children (their
    checkpoint stays): they come back when one resumes."""
    namespace = view.pool.namespace
    live = _pool_live(kube, namespace, view.pool.name)
    desired = pool.desired(view.pool, config)
    references = pools.owner_references(view.owners)
    sync_shared(
        namespace, desired, references, live, children.BY_KIND, kube, emit, outcome, "pool "
    )
    if users is not None and desired:
        outcome.applied += users.ensure(view.pool, references, kube, emit)
    admit_training(view, kube, config, emit, outcome)
    return live


def admit_training(
    view: pools.PoolView, kube: Kube, config: PlatformConfig, emit: Emit, outcome: Outcome
) -> None:
    """Unsuspend the pool's queued training Jobs, oldest first, while fewer than
    pools.trainingConcurrency run: every pipeline's training gets its turn, and the node is not
    crowded by all of them at once. Members reconcile concurrently, so two may admit at the
    same moment: the limit can be passed by one, briefly."""
    served = {member.name for member in view.pool.members}
    selector = f"{COMPONENT_LABEL}={training.COMPONENT},app.kubernetes.io/managed-by={MANAGED_BY}"
    jobs = [
        job
        for job in kube.list(JOB.path(view.pool.namespace), selector)
        if job["metadata"].get("labels", {}).get(PIPELINE_LABEL) in served
        and not _job_finished(job)
    ]
    running = [job for job in jobs if not job["spec"].get("suspend")]
    waiting = sorted(
        (job for job in jobs if job["spec"].get("suspend")),
        key=lambda job: (job["metadata"].get("creationTimestamp", ""), job["metadata"]["name"]),
    )
    for job in waiting[: max(0, config.pools.training_concurrency - len(running))]:
        name = job["metadata"]["name"]
        kube.request(
            "PATCH",
            JOB.path(view.pool.namespace, name),
            body={"spec": {"suspend": False}},
            content_type="application/merge-patch+json",
        )
        outcome.applied.append(f"Job/{name} (admitted)")
        emit("Normal", "TrainingAdmitted", f"training Job {name} admitted from the pool's queue")


def leave_other_pools(
    uid: str,
    view: pools.PoolView | None,
    kube: Kube,
    namespace: str,
    siblings: Sequence[Mapping[str, Any]],
    config: PlatformConfig,
    emit: Emit,
    outcome: Outcome,
    users: KafkaUserManager | None = None,
) -> None:
    """A pipeline that moved out of a pool (to another, or to dedicated) no longer owns its
    children: the pool is reconciled again without it, and goes if it was the last."""
    selector = f"{POOL_LABEL},app.kubernetes.io/managed-by={MANAGED_BY}"
    left: set[str] = set()
    for kind in POOL_KINDS:
        for obj in kube.list(kind.path(namespace), selector):
            name = obj["metadata"]["labels"][POOL_LABEL]
            if uid in _owner_uids(obj) and (view is None or name != view.pool.name):
                left.add(name)
    for name in sorted(left):
        others = [b for b in siblings if b["metadata"]["uid"] != uid]
        remaining = pools.pool_view(namespace, name, others, {})
        if remaining is not None:
            reconcile_pool(remaining, kube, config, emit, outcome, users)
            continue
        for (kind_name, child), _ in _pool_live(kube, namespace, name).items():
            kube.delete(children.BY_KIND[kind_name].path(namespace, child))
            outcome.deleted.append(f"{kind_name}/{child}")


def namespace_owner_references(bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every live pipeline of the namespace, none the controller: the namespace's policies go
    with the last of them, and never before."""
    return [
        pools.owner_reference(b["metadata"]["name"], b["metadata"]["uid"], controller=False)
        for b in sorted(bodies, key=lambda b: str(b["metadata"]["uid"]))
        if not b["metadata"].get("deletionTimestamp")
    ]


def reconcile_network_policies(
    body: Mapping[str, Any],
    kube: Kube,
    config: PlatformConfig,
    emit: Emit,
    outcome: Outcome,
) -> None:
    """The namespace's NetworkPolicies, as every pipeline there wants them (idempotent: each
    pipeline's reconcile runs it with the same inputs and, at rest, writes nothing). The owners
    come from the API server, not from the siblings this process has seen: an operator that
    just started knows only some, and would take the others' ownership away."""
    namespace = body["metadata"]["namespace"]
    selector = (
        f"{network_policy.SCOPE_LABEL}={network_policy.SCOPE},"
        f"app.kubernetes.io/managed-by={MANAGED_BY}"
    )
    live = {
        (NETWORK_POLICY.kind, obj["metadata"]["name"]): obj
        for obj in kube.list(NETWORK_POLICY.path(namespace), selector)
    }
    pipelines = kube.list(f"{CRD_API_PATH}/namespaces/{namespace}/{PLURAL}", "")
    uid = body["metadata"]["uid"]
    references = namespace_owner_references(
        [body, *(p for p in pipelines if p["metadata"]["uid"] != uid)]
    )
    desired = network_policy.desired(namespace, config)
    kinds = {NETWORK_POLICY.kind: NETWORK_POLICY}
    sync_shared(namespace, desired, references, live, kinds, kube, emit, outcome)


def reconcile(
    body: Mapping[str, Any],
    kube: Kube,
    config: PlatformConfig,
    emit: Emit,
    adopt: Callable[[list[dict[str, Any]], Mapping[str, Any]], None],
    siblings: Sequence[Mapping[str, Any]] = (),
    users: KafkaUserManager | None = None,
) -> Outcome:
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = int(meta.get("generation", 1))
    outcome = Outcome()
    current = body.get("status") or {}

    def write_status(new: dict[str, Any]) -> None:
        outcome.phase = new["phase"]
        outcome.status = new
        if status.status_changed(new, current):
            kube.patch_status(pipeline_path(namespace, name), new)
            outcome.status_written = True

    problems: list[str] = []
    spec: CryptoPipelineSpec | None = None
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as error:
        problems = [f"spec.{problem}" for problem in error.problems]
    problems += symbol_conflicts(body, siblings)
    view: pools.PoolView | None = None
    if spec is not None and not problems and pools.shared_pool(spec) is not None:
        view = pool_of(namespace, spec.pool, body, siblings)
        problems += view.problems.get(name, []) if view is not None else []
    if problems:
        obs = status.Observed(generation, False, False, invalid=tuple(problems))
        new = status.compute(obs, current, now())
        if status.status_changed(new, current):
            emit("Warning", "InvalidSpec", "; ".join(problems))
        write_status(new)
        return outcome

    assert spec is not None
    pipeline = Pipeline(name, namespace, spec)
    deps = check_dependencies(kube, config)
    selector = f"{PIPELINE_LABEL}={name},app.kubernetes.io/managed-by={MANAGED_BY}"
    live: dict[tuple[str, str], dict[str, Any]] = {}
    if deps.ready:
        for kind in CHILD_KINDS:
            for obj in kube.list(kind.path(namespace), selector):
                live[(kind.kind, obj["metadata"]["name"])] = obj
        desired = children.desired(pipeline, config)
        if training.queued(pipeline) and not spec.suspend:
            for manifest in desired:  # admitted or queued, as the pool decided: not drift
                have = live.get((JOB.kind, manifest["metadata"]["name"]))
                if manifest["kind"] == JOB.kind and have is not None:
                    manifest["spec"]["suspend"] = bool(have["spec"].get("suspend"))
        adopt(desired, body)
        wanted = {(d["kind"], d["metadata"]["name"]) for d in desired}
        for manifest in desired:
            key = (manifest["kind"], manifest["metadata"]["name"])
            have = live.get(key)
            if have is not None and key[0] == JOB.kind and _job_finished(have):
                continue  # a finished Job is history, not drift
            paths = drift.drifted(manifest, have)
            if not paths:
                continue
            kind = children.kind_of(manifest)
            try:
                live[key] = kube.apply(kind.path(namespace, key[1]), manifest)
            except ApiError as error:
                if not error.terminating:  # a namespace being deleted takes the pipeline too
                    emit("Warning", "ApplyFailed", f"{key[0]} {key[1]}: {error.message}")
                raise
            verb = "Created" if have is None else "Restored"
            outcome.applied.append(f"{key[0]}/{key[1]}")
            emit("Normal", verb, f"{verb.lower()} {key[0]} {key[1]} ({', '.join(paths[:3])})")
        for key, obj in list(live.items()):
            if key not in wanted and _controlled_by(obj, uid):
                kube.delete(children.BY_KIND[key[0]].path(namespace, key[1]))
                del live[key]
                outcome.deleted.append(f"{key[0]}/{key[1]}")
                emit("Normal", "Deleted", f"deleted {key[0]} {key[1]}: no longer part of the spec")
        if users is not None and spec.isolation is Isolation.DEDICATED:
            controller = [pools.owner_reference(name, uid, controller=True)]
            outcome.applied += users.ensure(pipeline, controller, kube, emit)
        if view is not None:
            live.update(reconcile_pool(view, kube, config, emit, outcome, users))
        leave_other_pools(uid, view, kube, namespace, siblings, config, emit, outcome, users)
        reconcile_network_policies(body, kube, config, emit, outcome)

    def one(kind: Kind, child_name: str) -> dict[str, Any] | None:
        return live.get((kind.kind, child_name))

    jobs = [obj for (k, _), obj in live.items() if k == JOB.kind]
    # Jobs the CronJob started carry our labels too (from its jobTemplate).
    pods: list[dict[str, Any]] = []
    if deps.ready and any(_job_finished(job) for job in jobs):
        pods = kube.list(POD.path(namespace), f"{selector},app.kubernetes.io/component=trainer")
    producer_name = pool.producer_name(view.pool) if view else producer.name(pipeline)
    producer_obj = one(DEPLOYMENT, producer_name)
    predictor_name = pool.predictor_name(view.pool) if view else predictor.name(pipeline)
    predictor_obj = one(DEPLOYMENT, predictor_name)
    early = status.conditions(
        status.Observed(
            generation,
            spec.suspend,
            spec.dashboard.enabled,
            producer=producer_obj,
            predictor=predictor_obj,
        )
    )[0]
    available = {cond.type: cond.status == status.TRUE for cond in early}
    age, note, newest = (None, "dependencies are not ready", "")
    forecast_time = None
    if deps.ready:
        metrics_service = (
            pool.producer_metrics_service_name(view.pool)
            if view
            else producer.metrics_service_name(pipeline)
        )
        age, note, newest = _freshness(
            kube, pipeline, metrics_service, config, available["ProducerReady"]
        )
        predictor_service = (
            pool.predictor_metrics_service_name(view.pool)
            if view
            else predictor.metrics_service_name(pipeline)
        )
        forecast_time = _last_forecast(
            kube, pipeline, predictor_service, config, available["PredictorReady"]
        )
    obs = status.Observed(
        generation=generation,
        suspend=spec.suspend,
        dashboard_enabled=spec.dashboard.enabled,
        producer=producer_obj,
        spark_application=one(
            SPARK_APPLICATION,
            pool.aggregator_name(view.pool) if view else aggregator.name(pipeline),
        ),
        training_jobs=jobs,
        trainer_pods=pods,
        predictor=predictor_obj,
        dashboard=one(
            DEPLOYMENT, pool.dashboard_name(view.pool) if view else dashboard.name(pipeline)
        ),
        dependencies=deps,
        newest_trade_age=age,
        newest_trade_time=newest,
        freshness_note=note or "measured",
        max_trade_age=float(config.freshness.max_age_seconds),
        last_forecast_time=forecast_time,
    )
    new = status.compute(obs, current, now())
    old_phase = current.get("phase")
    write_status(new)
    if outcome.status_written and old_phase != new["phase"]:
        ready = next(c for c in new["conditions"] if c["type"] == "Ready")
        event_type = "Warning" if new["phase"] in ("Degraded", "Pending") else "Normal"
        emit(event_type, new["phase"], ready["message"][:1000])
    return outcome
