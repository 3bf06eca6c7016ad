"""Registry of model versions with a promotion gate.

Layout under the storage root:
    versions/<version>/model.keras, preprocessing.json   the predictor (lstm.py)
    versions/<version>/spec.json                         the ModelSpec it was trained with
    versions/<version>/extra/<name>                      optional files (the report)
    versions/<version>/manifest.json                     written last: data range, metrics,
                                                         library versions, gate decision
    current.json                                         the promoted version, if any

Retention (`Registry.prune`, after each training): the current version and the newest K
complete versions stay; older versions, and folders a crashed training left without a
manifest (older than the newest complete version), are deleted. The newest version always
stays, so version numbers never repeat.

Promotion gate: a version becomes current only if its walk-forward MASE against persistence
is below 1; otherwise it stays a candidate with the reason recorded, and `serving_choice`
falls back to the best baseline of the latest evaluation (unless an earlier version is
current). All I/O goes through `Storage`: a local folder here, HDFS in the cluster.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from cryptopipe_model.evaluate import Evaluation
from cryptopipe_model.lstm import LstmPredictor

MANIFEST = "manifest.json"
CURRENT = "current.json"
SPEC = "spec.json"
MASE_THRESHOLD = 1.0
LIBRARIES = ("numpy", "pandas", "tensorflow", "keras", "cryptopipe-model", "cryptopipe-schemas")


class Storage(Protocol):
    """Byte blobs under '/'-separated relative paths."""

    def read(self, path: str) -> bytes:
        """The blob's bytes; FileNotFoundError if absent."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Create or replace the blob atomically (readers see the old or the new bytes)."""
        ...

    def exists(self, path: str) -> bool: ...

    def children(self, path: str) -> list[str]:
        """Names directly under a folder path, sorted; empty if it does not exist."""
        ...

    def delete(self, path: str) -> None:
        """Remove a blob or a folder with everything under it; nothing if absent."""
        ...


@dataclass(frozen=True)
class LocalStorage:
    root: Path

    def _path(self, path: str) -> Path:
        resolved = (self.root / path).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"path escapes the registry: {path}")
        return resolved

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def write(self, path: str, data: bytes) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def children(self, path: str) -> list[str]:
        folder = self._path(path)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def delete(self, path: str) -> None:
        target = self._path(path)
        if target == self.root.resolve():
            raise ValueError("refusing to delete the registry's root")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


@dataclass(frozen=True)
class DataRange:
    start: str  # ISO 8601 UTC of the first candle's window_start
    end: str  # ... of the last candle's
    rows: int

    @classmethod
    def of(cls, candles: pd.DataFrame) -> DataRange:
        starts = pd.DatetimeIndex(candles["window_start"])
        return cls(starts[0].isoformat(), starts[-1].isoformat(), len(candles))


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def promotion_gate(evaluation: Evaluation, model_name: str) -> GateDecision:
    """Promote only if the model beats persistence out of sample: walk-forward MASE < 1."""
    if model_name not in evaluation.scores:
        return GateDecision(False, f"{model_name} was not evaluated")
    overall = evaluation.scores[model_name].overall
    mase = overall.mase
    if not math.isfinite(mase):
        return GateDecision(False, "walk-forward MASE is undefined (persistence error is zero)")
    detail = f"walk-forward MASE {mase:.4f} over {overall.n} forecasts"
    if math.isfinite(overall.dm_p):
        detail += f", Diebold-Mariano p {overall.dm_p:.3g}"
    if mase < MASE_THRESHOLD:
        return GateDecision(True, f"beats persistence: {detail}")
    return GateDecision(False, f"does not beat persistence: {detail} (needs < {MASE_THRESHOLD})")


@dataclass(frozen=True)
class VersionRecord:
    version: str
    created_at: str
    model_name: str
    promoted: bool
    reason: str
    mase: float | None
    best_baseline: str
    best_baseline_mase: float | None
    spec: dict[str, Any]
    data_range: DataRange
    metrics: dict[str, Any]
    library_versions: dict[str, str]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VersionRecord:
        raw = json.loads(data)
        raw["data_range"] = DataRange(**raw["data_range"])
        return cls(**raw)


@dataclass(frozen=True)
class ServingChoice:
    """What the predictor should serve: a model version, or a baseline by name; and why."""

    kind: Literal["model", "baseline"]
    name: str
    reason: str


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def prunable(folders: list[str], complete: list[str], current: str | None, keep: int) -> list[str]:
    """Version folders to delete: every folder but the current version and the newest `keep`
    complete ones; a folder without a manifest only if it is older than the newest complete
    version (a newer one may be a training still writing). Names sort by age (v0001, v0002...)."""
    if keep < 1:
        raise ValueError(f"keep at least one version, got {keep}")
    kept = set(complete[-keep:]) | ({current} if current else set())
    newest = complete[-1] if complete else None
    return [
        name
        for name in sorted(folders)
        if name not in kept and (name in complete or (newest is not None and name < newest))
    ]


def below_baseline_streak(promoted_newest_first: Iterable[bool]) -> int:
    """How many of the newest versions in a row failed the promotion gate."""
    streak = 0
    for promoted in promoted_newest_first:
        if promoted:
            break
        streak += 1
    return streak


class Registry:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def versions(self) -> list[str]:
        """Complete versions (manifest written), oldest first."""
        return [
            name
            for name in self.storage.children("versions")
            if self.storage.exists(f"versions/{name}/{MANIFEST}")
        ]

    def _next_version(self) -> str:
        numbers = [
            int(name[1:])
            for name in self.storage.children("versions")
            if name.startswith("v") and name[1:].isdigit()
        ]
        return f"v{max(numbers, default=0) + 1:04d}"

    def register(
        self,
        predictor: LstmPredictor,
        evaluation: Evaluation,
        data_range: DataRange,
        extra: dict[str, bytes] | None = None,
        now: datetime | None = None,
    ) -> VersionRecord:
        """Store a trained version, apply the promotion gate, and point current at it if passed."""
        decision = promotion_gate(evaluation, predictor.name)
        best = evaluation.best_baseline()
        version = self._next_version()
        mase = (
            evaluation.scores[predictor.name].overall.mase
            if predictor.name in evaluation.scores
            else math.nan
        )
        record = VersionRecord(
            version=version,
            created_at=(now or datetime.now(UTC)).isoformat(),
            model_name=predictor.name,
            promoted=decision.promote,
            reason=decision.reason,
            mase=_finite(mase),
            best_baseline=best.name,
            best_baseline_mase=_finite(best.overall.mase),
            spec=asdict(predictor.spec),
            data_range=data_range,
            metrics=evaluation.summary(),
            library_versions=library_versions(),
        )
        folder = f"versions/{version}"
        for name, data in predictor.artifacts().items():
            self.storage.write(f"{folder}/{name}", data)
        self.storage.write(f"{folder}/{SPEC}", json.dumps(record.spec, indent=2).encode())
        for name, data in (extra or {}).items():
            self.storage.write(f"{folder}/extra/{name}", data)
        self.storage.write(f"{folder}/{MANIFEST}", record.to_json())
        if decision.promote:
            self._point_current(version, record.created_at, decision.reason)
        return record

    def promote(self, version: str, reason: str, now: datetime | None = None) -> None:
        """Make a registered version current by hand (an operator's override of the gate)."""
        self.record(version)  # it must exist
        self._point_current(version, (now or datetime.now(UTC)).isoformat(), reason)

    def _point_current(self, version: str, at: str, reason: str) -> None:
        pointer = {"version": version, "promoted_at": at, "reason": reason}
        self.storage.write(CURRENT, json.dumps(pointer, indent=2).encode())

    def record(self, version: str) -> VersionRecord:
        return VersionRecord.from_json(self.storage.read(f"versions/{version}/{MANIFEST}"))

    def load(self, version: str) -> LstmPredictor:
        folder = f"versions/{version}"
        names = [n for n in self.storage.children(folder) if n not in (MANIFEST, SPEC, "extra")]
        return LstmPredictor.from_artifacts(
            {name: self.storage.read(f"{folder}/{name}") for name in names}
        )

    def current(self) -> VersionRecord | None:
        version = self.current_version()
        return None if version is None else self.record(version)

    def current_version(self) -> str | None:
        if not self.storage.exists(CURRENT):
            return None
        return str(json.loads(self.storage.read(CURRENT))["version"])

    def below_baseline_streak(self) -> int:
        """Trainings in a row, newest first, whose version did not beat its best baseline (the
        pruned ones no longer count: at most spec.retention.modelVersions + 1)."""
        return below_baseline_streak(
            self.record(version).promoted for version in reversed(self.versions())
        )

    def prune(self, keep: int) -> list[str]:
        """Delete what `prunable` names; the deleted versions, oldest first."""
        doomed = prunable(
            self.storage.children("versions"), self.versions(), self.current_version(), keep
        )
        for name in doomed:
            self.storage.delete(f"versions/{name}")
        return doomed

    def serving_choice(self) -> ServingChoice:
        current = self.current()
        if current is not None:
            return ServingChoice("model", current.version, f"{current.version} {current.reason}")
        versions = self.versions()
        if not versions:
            return ServingChoice("baseline", "persistence", "no model version registered yet")
        latest = self.record(versions[-1])
        mase = latest.best_baseline_mase
        score = f"MASE {mase:.4f}" if mase is not None else "MASE undefined"
        return ServingChoice(
            "baseline",
            latest.best_baseline,
            f"no promoted version ({latest.version} {latest.reason}); "
            f"best baseline {latest.best_baseline} ({score})",
        )
