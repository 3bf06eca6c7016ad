"""Leader election with a coordination.k8s.io Lease: only the holder reconciles.

A standby replica waits until the Lease expires; a leader that cannot renew in time stops
(the process exits and its Deployment restarts it as a standby), so two replicas never act at
once. Renewing costs one write per `renew_seconds`; that is the operator's only steady write.

Why not `kubernetes.leaderelection` (client 37): it cannot release the Lease on shutdown and
its acquire loop cannot be stopped. A leader stopped by SIGTERM (a rollout, a drain) would
leave its standby waiting out the whole lease, and a standby could not exit on SIGTERM until it
leads. Here a clean stop releases the Lease: tests/integration/test_operator_pod.py measures
the hand-over after a leader pod is deleted and requires it under 20 s (lease 15 s + grace 30 s
without the release).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptopipe_operator.kube import ApiError, Kube

log = logging.getLogger(__name__)


def _micro(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class LeaderElection:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self.kube = kube
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.is_leader = threading.Event()
        self._last_renew = 0.0

    def _body(self, lease: dict[str, Any] | None, acquire: bool) -> dict[str, Any]:
        stamp = _micro(datetime.now(UTC))
        spec = dict((lease or {}).get("spec") or {})
        if acquire:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions", 0)) + (1 if lease else 0)
        spec.update(
            holderIdentity=self.identity, leaseDurationSeconds=self.lease_seconds, renewTime=stamp
        )
        metadata: dict[str, Any] = {"name": self.name}
        if lease:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        try:
            lease = self.kube.get(self.path)
            if lease is None:
                self.kube.request("POST", self.collection, body=self._body(None, True))
            else:
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity")
                duration = spec.get("leaseDurationSeconds") or self.lease_seconds
                expired = _parse(spec.get("renewTime")) + duration < time.time()
                if holder not in (self.identity, None, "") and not expired:
                    return False
                self.kube.request("PUT", self.path, body=self._body(lease, holder != self.identity))
        except ApiError as error:
            if error.status in (409, 422):  # someone else won the race
                return False
            raise
        self._last_renew = time.monotonic()
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until leader (True) or until stopped (False)."""
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    log.info("became the leader (Lease %s)", self.name)
                    self.is_leader.set()
                    return True
            except Exception:
                log.exception("Lease %s: acquiring failed", self.name)
            stop.wait(self.renew_seconds)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew until stopped; call `on_lost` if the Lease cannot be kept."""
        while not stop.wait(self.renew_seconds):
            try:
                held = self.try_acquire_or_renew()
            except Exception:
                log.exception("Lease %s: renewing failed", self.name)
                held = time.monotonic() - self._last_renew < self.lease_seconds * 2 / 3
            if not held:
                log.error("lost the Lease %s; stopping", self.name)
                self.is_leader.clear()
                on_lost()
                return

    def release(self) -> None:
        """Hand the Lease over at once on a clean shutdown."""
        if not self.is_leader.is_set():
            return
        try:
            lease = self.kube.get(self.path)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                body = self._body(lease, False)
                body["spec"]["holderIdentity"] = ""
                body["spec"]["leaseDurationSeconds"] = 1
                self.kube.request("PUT", self.path, body=body)
        except Exception:
            log.exception("Lease %s: release failed", self.name)
        self.is_leader.clear()
