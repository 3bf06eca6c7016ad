"""kopf wiring (thin): watch CryptoPipelines, reconcile on every change and on a resync timer.

Only `on.event` handlers and a resync loop: kopf stores no progress, diff-base or finalizer on
the pipelines, so a pipeline at rest is never written to. Children come back within one resync
period after a hand edit or deletion.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from cryptopipe_operator.config import PlatformConfig
from cryptopipe_operator.kube import ApiError, Kube
from cryptopipe_operator.metrics import Metrics
from cryptopipe_operator.pools import shared_pool
from cryptopipe_operator.reconcile import reconcile
from cryptopipe_operator.user_manager import KafkaUserManager
from cryptopipe_schemas.crd import PLURAL
from cryptopipe_schemas.spec import API_GROUP, API_VERSION, SpecError, parse_spec

log = logging.getLogger(__name__)
COMPONENT = "cryptopipe-operator"


@dataclass
class State:
    kube: Kube
    config: PlatformConfig
    metrics: Metrics
    kafka_users: KafkaUserManager | None = None
    namespaces: tuple[str, ...] = ()  # watched; empty: every namespace
    # Where this process has seen a pipeline: a cluster-wide operator sweeps Kafka users there
    # only, never those of another cluster's namespaces on a shared Kafka.
    seen_namespaces: set[str] = field(default_factory=set)
    started: threading.Event = field(default_factory=threading.Event)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> latest body
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def remember(self, body: Mapping[str, Any]) -> None:
        with self._guard:
            self.pipelines[body["metadata"]["uid"]] = dict(body)
            self.seen_namespaces.add(body["metadata"]["namespace"])

    def forget(self, uid: str) -> None:
        with self._guard:
            self.pipelines.pop(uid, None)
            self._locks.pop(uid, None)

    def siblings(self, namespace: str) -> list[dict[str, Any]]:
        with self._guard:
            return [b for b in self.pipelines.values() if b["metadata"]["namespace"] == namespace]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._guard:
            return list(self.pipelines.values())


def post_event(kube: Kube, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """A core/v1 Event about the pipeline (best effort: never fails a reconcile).

    Posted directly, not through kopf's event API: reconciles also run on the resync thread,
    outside kopf's handlers and before kopf starts, where kopf has no poster to queue for."""
    meta = body["metadata"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "CryptoPipeline",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
    except Exception:
        log.warning("could not post event %s for %s", reason, meta["name"])


def reconcile_one(state: State, body: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    with state.lock(meta["uid"]):
        # The newest body we know: a resync must not act on a stale copy.
        latest = state.pipelines.get(meta["uid"], body)
        started = time.monotonic()
        outcome_name = "error"
        try:
            outcome = reconcile(
                latest,
                state.kube,
                state.config,
                emit=lambda kind, reason, message: post_event(
                    state.kube, latest, kind, reason, message
                ),
                adopt=lambda objs, owner: kopf.adopt(objs, owner=cast(Any, dict(owner))),
                siblings=state.siblings(meta["namespace"]),
                users=state.kafka_users,
            )
            if outcome.status_written:
                with state._guard:
                    if meta["uid"] in state.pipelines:
                        state.pipelines[meta["uid"]]["status"] = outcome.status
            outcome_name = "changed" if outcome.applied or outcome.deleted else "unchanged"
            if outcome.applied or outcome.deleted or outcome.status_written:
                log.info(
                    "reconciled %s/%s: phase %s, applied %s, deleted %s, status %s",
                    meta["namespace"], meta["name"], outcome.phase, outcome.applied,
                    outcome.deleted, "written" if outcome.status_written else "unchanged",
                )  # fmt: skip
        except ApiError as error:
            if error.status == 404 or error.terminating:  # it is going away
                outcome_name = "gone"
                return
            log.error("reconcile of %s/%s failed: %s", meta["namespace"], meta["name"], error)
        except Exception:
            log.exception("reconcile of %s/%s failed", meta["namespace"], meta["name"])
        finally:
            state.metrics.observe(time.monotonic() - started, outcome_name)


def pool_mates(body: Mapping[str, Any], siblings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pipelines that shared a pool with `body` (none for a dedicated or invalid one)."""
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError:
        return []
    name = shared_pool(spec)
    if name is None:
        return []
    mates = []
    for sibling in siblings:
        try:
            if shared_pool(parse_spec(sibling.get("spec") or {})) == name:
                mates.append(sibling)
        except SpecError:
            continue
    return mates


def bearer_token(api_key: Mapping[str, str]) -> str | None:
    """The bare token from the kubernetes client's api_key: a kubeconfig stores
    "Bearer <token>", load_incluster_config "bearer <token>"."""
    value = api_key.get("authorization", "") or api_key.get("BearerToken", "")
    scheme, _, credential = value.strip().partition(" ")
    token = credential if scheme.lower() == "bearer" else value
    return token.strip() or None


def register(registry: kopf.OperatorRegistry, state: State) -> None:
    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True  # the Lease (leader.py) keeps replicas apart
        settings.scanning.disabled = True
        settings.posting.enabled = False  # our own events, from reconcile
        settings.execution.max_workers = 8
        settings.watching.server_timeout = 300
        state.started.set()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as our own client (in-cluster, or the given kubeconfig).
        conf = state.kube.api.configuration
        token = bearer_token(conf.api_key or {})
        return kopf.ConnectionInfo(
            server=conf.host,
            ca_path=conf.ssl_ca_cert,
            insecure=not conf.verify_ssl,
            scheme="Bearer" if token else None,
            token=token,
            certificate_path=conf.cert_file,
            private_key_path=conf.key_file,
        )

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    def on_pipeline(event: Mapping[str, Any], body: Any, **_: Any) -> None:
        raw = dict(body)
        if event.get("type") == "DELETED":
            state.forget(raw["metadata"]["uid"])
            for mate in pool_mates(raw, state.siblings(raw["metadata"]["namespace"])):
                reconcile_one(state, mate)  # the pool's members and owners change now
            return
        state.remember(raw)
        reconcile_one(state, raw)


def resync_forever(state: State, stop: threading.Event, workers: int = 4) -> None:
    """Reconcile every known pipeline each `resync_seconds` (restores drifted children)."""
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="resync") as pool:
        while not stop.wait(state.config.resync_seconds):
            if not state.started.is_set():
                continue
            futures = [pool.submit(reconcile_one, state, body) for body in state.snapshot()]
            concurrent.futures.wait(futures)
            sweep_kafka_users(state)


def list_pipelines(kube: Kube, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """The namespaces' CryptoPipelines, from the API server (not kopf's cache, which may not
    have seen them all yet)."""
    base = f"/apis/{API_GROUP}/{API_VERSION}"
    return [item for ns in namespaces for item in kube.list(f"{base}/namespaces/{ns}/{PLURAL}", "")]


def sweep_kafka_users(state: State) -> None:
    """Delete the Kafka users of pools and pipelines that are gone (kafka.manageUsers): their
    Secrets go with their owner, their users and ACLs would stay in Kafka."""
    if state.kafka_users is None:
        return
    with state._guard:
        namespaces = state.namespaces or tuple(sorted(state.seen_namespaces))
    if not namespaces:
        return
    try:
        gone = state.kafka_users.sweep(lambda: list_pipelines(state.kube, namespaces), namespaces)
    except Exception:
        log.exception("could not delete the Kafka users of gone pipelines; next resync again")
        return
    for user in gone:
        log.info("deleted Kafka user %s and its ACLs: its pipeline or pool is gone", user)
