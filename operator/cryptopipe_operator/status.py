"""A pipeline's status from what its children report (pure: observations in, status out).

Conditions follow the Kubernetes API conventions as Strimzi and spark-operator use them: type,
status (True/False/Unknown), a CamelCase reason, a message a person reads, lastTransitionTime
(kept while the status stays the same) and observedGeneration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
CONDITION_TYPES = (
    "Ready",
    "DependenciesReady",
    "ProducerReady",
    "AggregatorRunning",
    "ModelTrained",
    "ModelPromoted",
    "PredictorReady",
    "DashboardReady",
    "DataFresh",
)
# What Ready requires, in the order a person should fix it.
# Not ModelTrained: until a model is trained (and after, until one passes the gate) the best
# baseline serves the forecasts, so a pipeline is Ready without waiting for its training; a
# training that failed is the one training state that makes it not Ready.
READY_REQUIRES = (
    "DependenciesReady",
    "ProducerReady",
    "AggregatorRunning",
    "PredictorReady",
    "DashboardReady",
)


@dataclass(frozen=True)
class Dependencies:
    missing: tuple[str, ...] = ()  # one sentence per missing dependency

    @property
    def ready(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class TrainingResult:
    """What the trainer writes to its termination message (JSON)."""

    version: str
    promoted: bool
    reason: str = ""
    mase: float | None = None
    baseline_mase: float | None = None

    @classmethod
    def parse(cls, message: str) -> TrainingResult | None:
        try:
            raw = json.loads(message)
            return cls(
                version=str(raw["version"]),
                promoted=bool(raw["promoted"]),
                reason=str(raw.get("reason", "")),
                mase=raw.get("mase"),
                baseline_mase=raw.get("baselineMase"),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Observed:
    """What the operator saw of a pipeline's children (None: the child does not exist)."""

    generation: int
    suspend: bool
    dashboard_enabled: bool
    producer: Mapping[str, Any] | None = None
    spark_application: Mapping[str, Any] | None = None
    training_jobs: Sequence[Mapping[str, Any]] = ()  # ours and the CronJob's, any order
    trainer_pods: Sequence[Mapping[str, Any]] = ()
    predictor: Mapping[str, Any] | None = None
    dashboard: Mapping[str, Any] | None = None
    dependencies: Dependencies = field(default_factory=Dependencies)
    invalid: tuple[str, ...] = ()  # problems the CRD could not catch
    newest_trade_age: float | None = None  # seconds; None: not measured
    newest_trade_time: str = ""  # RFC 3339, to the second: what a stale message names
    freshness_note: str = "the producer's metrics were not read"
    max_trade_age: float = 300.0
    last_forecast_time: str | None = None


@dataclass(frozen=True)
class Cond:
    type: str
    status: str
    reason: str
    message: str


def _conditions_of(obj: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not obj:
        return {}
    return {c.get("type", ""): c for c in obj.get("status", {}).get("conditions", []) or []}


def _deployment(kind: str, obj: Mapping[str, Any] | None, suspend: bool, what: str) -> Cond:
    if suspend:
        return Cond(kind, FALSE, "Suspended", f"the {what} is scaled to zero (spec.suspend)")
    if obj is None:
        return Cond(kind, FALSE, "NotCreated", f"the {what} Deployment does not exist yet")
    want = obj.get("spec", {}).get("replicas", 1)
    status = obj.get("status", {})
    available = status.get("availableReplicas", 0) or 0
    updated = status.get("updatedReplicas", 0) or 0
    observed = status.get("observedGeneration", 0) == obj.get("metadata", {}).get("generation")
    if observed and available >= want and updated >= want:
        return Cond(kind, TRUE, "Available", f"{available}/{want} {what} replica(s) available")
    progressing = _conditions_of(obj).get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Cond(kind, FALSE, "ProgressDeadlineExceeded", progressing.get("message", ""))
    return Cond(kind, FALSE, "Progressing", f"{available}/{want} {what} replica(s) available")


def _aggregator(obs: Observed) -> Cond:
    kind = "AggregatorRunning"
    if obs.suspend:
        return Cond(
            kind,
            FALSE,
            "Suspended",
            "the SparkApplication is removed while suspended; its checkpoint is kept",
        )
    app = obs.spark_application
    if app is None:
        return Cond(kind, FALSE, "NotCreated", "the SparkApplication does not exist yet")
    state = app.get("status", {}).get("applicationState", {})
    name = state.get("state", "")
    if name == "RUNNING":
        return Cond(kind, TRUE, "Running", "the Spark driver is running")
    if name in ("FAILED", "SUBMISSION_FAILED", "FAILING"):
        detail = state.get("errorMessage") or "no error message"
        return Cond(kind, FALSE, "Failed", f"Spark application {name}: {detail}")
    if name in ("INVALIDATING", "PENDING_RERUN"):
        return Cond(
            kind,
            FALSE,
            "Resubmitting",
            "the SparkApplication's spec changed: spark-operator stops the driver and submits the "
            "new spec, which continues from the checkpoint",
        )
    if name in ("COMPLETED", "SUCCEEDING"):
        return Cond(kind, FALSE, "Completed", "the streaming job ended; it should run forever")
    if not name:
        return Cond(kind, FALSE, "Pending", "spark-operator has not picked it up yet")
    return Cond(kind, FALSE, name.title().replace("_", ""), f"Spark application state {name}")


def _job_finished(job: Mapping[str, Any]) -> str | None:
    for cond_type in ("Complete", "Failed"):
        if _conditions_of(job).get(cond_type, {}).get("status") == TRUE:
            return cond_type
    return None


def _job_time(job: Mapping[str, Any]) -> str:
    status = job.get("status", {})
    return str(status.get("completionTime") or status.get("startTime") or "")


def latest_result(pods: Sequence[Mapping[str, Any]]) -> TrainingResult | None:
    """The newest trainer pod's reported result."""
    found: list[tuple[str, TrainingResult]] = []
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses", []) or []:
            terminated = container.get("state", {}).get("terminated") or {}
            result = TrainingResult.parse(terminated.get("message") or "")
            if result is not None and terminated.get("exitCode") == 0:
                found.append((str(terminated.get("finishedAt") or ""), result))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def _training(obs: Observed) -> tuple[Cond, Cond, TrainingResult | None]:
    jobs = sorted(obs.training_jobs, key=_job_time)
    complete = [job for job in jobs if _job_finished(job) == "Complete"]
    result = latest_result(obs.trainer_pods)
    if complete:
        trained = Cond(
            "ModelTrained",
            TRUE,
            "Trained",
            f"training Job {complete[-1]['metadata']['name']} completed",
        )
    elif jobs and _job_finished(jobs[-1]) == "Failed":
        message = _conditions_of(jobs[-1]).get("Failed", {}).get("message", "")
        trained = Cond(
            "ModelTrained",
            FALSE,
            "TrainingFailed",
            f"training Job {jobs[-1]['metadata']['name']} failed: {message}",
        )
    elif jobs and jobs[-1].get("spec", {}).get("suspend"):
        trained = Cond(
            "ModelTrained",
            FALSE,
            "Queued",
            f"training Job {jobs[-1]['metadata']['name']} waits for its turn "
            "(the pool's training queue, or the pipeline is suspended)",
        )
    elif jobs:
        trained = Cond(
            "ModelTrained",
            FALSE,
            "Training",
            f"training Job {jobs[-1]['metadata']['name']} is running",
        )
    else:
        trained = Cond("ModelTrained", FALSE, "NotStarted", "no training Job has run yet")
    if result is None:
        promoted = Cond(
            "ModelPromoted", UNKNOWN, "NoResult", "no training run has reported a result yet"
        )
    elif result.promoted:
        promoted = Cond(
            "ModelPromoted",
            TRUE,
            "Promoted",
            f"model version {result.version} is serving: {result.reason}",
        )
    else:
        promoted = Cond(
            "ModelPromoted",
            FALSE,
            "BelowBaseline",
            f"model version {result.version} was not promoted: {result.reason}",
        )
    return trained, promoted, result


def _freshness(obs: Observed) -> Cond:
    if obs.suspend:
        return Cond("DataFresh", UNKNOWN, "Suspended", "no trades are read while suspended")
    age = obs.newest_trade_age
    if age is None:
        return Cond("DataFresh", UNKNOWN, "NotMeasured", obs.freshness_note)
    # Neither message holds the age itself: it changes on every reading, and a status that
    # changes on every reconcile is a write each time, for every pipeline (issue 24's target:
    # no status writes while nothing changes).
    if age <= obs.max_trade_age:
        return Cond(
            "DataFresh",
            TRUE,
            "Fresh",
            f"trades are arriving: the newest is within the {obs.max_trade_age:.0f}s limit",
        )
    since = f" since {obs.newest_trade_time}" if obs.newest_trade_time else ""
    return Cond(
        "DataFresh",
        FALSE,
        "Stale",
        f"no trade{since}: over the {obs.max_trade_age:.0f}s limit",
    )


def conditions(obs: Observed) -> tuple[list[Cond], str, TrainingResult | None]:
    """Every condition, and the phase."""
    if obs.invalid:
        message = "; ".join(obs.invalid)
        ready = Cond("Ready", FALSE, "InvalidSpec", message)
        return [ready], "Invalid", None
    if not obs.dependencies.ready:
        deps = Cond(
            "DependenciesReady", FALSE, "DependenciesMissing", "; ".join(obs.dependencies.missing)
        )
    else:
        deps = Cond(
            "DependenciesReady",
            TRUE,
            "Found",
            "Strimzi and spark-operator are installed and Kafka is ready",
        )
    producer = _deployment("ProducerReady", obs.producer, obs.suspend, "producer")
    aggregator = _aggregator(obs)
    trained, promoted, result = _training(obs)
    predictor = _deployment("PredictorReady", obs.predictor, obs.suspend, "predictor")
    if obs.dashboard_enabled:
        dashboard = _deployment("DashboardReady", obs.dashboard, obs.suspend, "dashboard")
    else:
        dashboard = Cond("DashboardReady", TRUE, "Disabled", "the dashboard is disabled")
    fresh = _freshness(obs)
    parts = {c.type: c for c in (deps, producer, aggregator, trained, predictor, dashboard)}
    if obs.suspend:
        ready = Cond("Ready", FALSE, "Suspended", "the pipeline is suspended (spec.suspend)")
        phase = "Suspended"
    elif deps.status != TRUE:
        ready = Cond("Ready", FALSE, "DependenciesNotReady", deps.message)
        phase = "Pending"
    else:
        waiting = [parts[name] for name in READY_REQUIRES if parts[name].status != TRUE]
        if trained.reason == "TrainingFailed":
            waiting.append(trained)
        if fresh.status == FALSE:
            waiting.append(fresh)
        failed = [
            c
            for c in waiting
            if c.reason in ("Failed", "TrainingFailed", "ProgressDeadlineExceeded", "Stale")
        ]
        if not waiting and trained.status == TRUE:
            ready = Cond("Ready", TRUE, "Ready", "every part of the pipeline is running")
            phase = "Running"
        elif not waiting:
            ready = Cond(
                "Ready",
                TRUE,
                "Ready",
                "every part of the pipeline is running; a baseline serves the forecasts until a "
                f"model is trained ({trained.message})",
            )
            phase = "Training"
        else:
            first = (failed or waiting)[0]
            ready = Cond(
                "Ready",
                FALSE,
                f"{first.type}{'Failed' if failed else 'Pending'}",
                "; ".join(f"{c.type}: {c.message}" for c in waiting),
            )
            phase = "Degraded" if failed else "Provisioning"
    return (
        [ready, deps, producer, aggregator, trained, promoted, predictor, dashboard, fresh],
        phase,
        result,
    )


def _merge(
    new: list[Cond], previous: Sequence[Mapping[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous or []}
    out = []
    for cond in new:
        old = before.get(cond.type, {})
        changed = old.get("status") != cond.status
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
                "observedGeneration": generation,
            }
        )
    return out


def compute(obs: Observed, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The whole `.status` (previous: the current `.status`, for transition times)."""
    previous = previous or {}
    conds, phase, result = conditions(obs)
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "phase": phase,
        "conditions": _merge(conds, previous.get("conditions", []), obs.generation, now),
    }
    if result is not None:
        model: dict[str, Any] = {"version": result.version, "promoted": result.promoted}
        if result.mase is not None:
            model["mase"] = result.mase
        if result.baseline_mase is not None:
            model["baselineMase"] = result.baseline_mase
        status["model"] = model
    elif previous.get("model"):
        status["model"] = previous["model"]
    if obs.last_forecast_time:
        status["lastForecastTime"] = obs.last_forecast_time
    elif previous.get("lastForecastTime"):
        status["lastForecastTime"] = previous["lastForecastTime"]
    return status


def status_changed(new: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether writing `new` would change anything (kopf's own keys are ignored)."""
    current = {k: v for k, v in (current or {}).items() if k != "kopf"}
    return dict(new) != current
