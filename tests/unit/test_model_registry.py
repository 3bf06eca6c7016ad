from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptopipe_model.evaluate import Evaluation
from cryptopipe_model.lstm import LstmPredictor
from cryptopipe_model.registry import (
    DataRange,
    LocalStorage,
    Registry,
    ServingChoice,
    below_baseline_streak,
    promotion_gate,
    prunable,
)
from cryptopipe_schemas.spec import ModelSpec
from model_support import candle_frame, trained

pytestmark = pytest.mark.unit

NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def beats() -> tuple[pd.DataFrame, LstmPredictor, Evaluation]:
    # A zig-zag: persistence is always a full swing off, the LSTM learns to undo the last move.
    rng = np.random.default_rng(0)
    steps = np.where(np.arange(400) % 2 == 0, 0.02, -0.02) + rng.normal(0, 0.002, 400)
    frame = candle_frame(100 * np.exp(np.cumsum(steps)), spread=0.002)
    spec = ModelSpec(lookback=8, horizon=2, layers=1, units=8, epochs=5, learning_rate=0.01)
    return frame, *trained(frame, spec)


@pytest.fixture(scope="module")
def loses() -> tuple[pd.DataFrame, LstmPredictor, Evaluation]:
    # Flat prices with rare jumps: persistence is nearly exact, an untrained network is not.
    steps = np.zeros(400)
    steps[::50] = 0.05
    frame = candle_frame(100 * np.exp(np.cumsum(steps)), spread=0.002, seed=1)
    spec = ModelSpec(lookback=8, horizon=2, layers=1, units=8, epochs=1, learning_rate=1e-7)
    return frame, *trained(frame, spec)


def test_gate_promotes_a_model_that_beats_persistence(
    tmp_path: Path, beats: tuple[pd.DataFrame, LstmPredictor, Evaluation]
) -> None:
    frame, predictor, evaluation = beats
    assert evaluation.scores["lstm"].overall.mase < 1
    registry = Registry(LocalStorage(tmp_path))
    assert registry.serving_choice() == ServingChoice(
        "baseline", "persistence", "no model version registered yet"
    )
    record = registry.register(
        predictor, evaluation, DataRange.of(frame), extra={"report.md": b"# r"}, now=NOW
    )
    assert record.version == "v0001" and record.promoted
    assert record.reason.startswith("beats persistence: walk-forward MASE")
    current = registry.current()
    assert current is not None and current.version == "v0001"
    choice = registry.serving_choice()
    assert (choice.kind, choice.name) == ("model", "v0001")

    # Round trip: the manifest and the predictor come back as they were stored.
    assert registry.record("v0001") == record
    assert record.data_range == DataRange(
        "2024-01-01T00:00:00+00:00", "2024-01-17T15:00:00+00:00", 400
    )
    assert record.spec["lookback"] == 8 and record.spec["horizon"] == 2
    assert record.metrics["models"]["lstm"]["overall"]["mase"] == pytest.approx(record.mase)
    assert {"numpy", "pandas", "tensorflow", "keras", "python"} <= set(record.library_versions)
    loaded = registry.load("v0001")
    origins = np.arange(380, 398)
    np.testing.assert_allclose(
        loaded.predict(frame, origins).point, predictor.predict(frame, origins).point, rtol=1e-6
    )
    assert (tmp_path / "versions/v0001/extra/report.md").read_bytes() == b"# r"
    assert json.loads((tmp_path / "versions/v0001/spec.json").read_text())["units"] == 8


def test_gate_keeps_a_losing_model_as_candidate_and_serving_falls_back(
    tmp_path: Path,
    beats: tuple[pd.DataFrame, LstmPredictor, Evaluation],
    loses: tuple[pd.DataFrame, LstmPredictor, Evaluation],
) -> None:
    frame, predictor, evaluation = loses
    mase = evaluation.scores["lstm"].overall.mase
    assert mase >= 1
    decision = promotion_gate(evaluation, "lstm")
    assert not decision.promote
    assert decision.reason.startswith(f"does not beat persistence: walk-forward MASE {mase:.4f}")

    registry = Registry(LocalStorage(tmp_path))
    record = registry.register(predictor, evaluation, DataRange.of(frame), now=NOW)
    assert not record.promoted and record.reason == decision.reason
    assert registry.current() is None
    assert registry.versions() == ["v0001"]
    best = evaluation.best_baseline()
    choice = registry.serving_choice()
    assert choice.kind == "baseline" and choice.name == best.name == record.best_baseline
    assert "v0001 does not beat persistence" in choice.reason
    assert f"best baseline {best.name}" in choice.reason

    # A later version that passes becomes current; a failing one after it does not displace it.
    good_frame, good, good_evaluation = beats
    assert registry.register(good, good_evaluation, DataRange.of(good_frame)).promoted
    registry.register(predictor, evaluation, DataRange.of(frame))
    current = registry.current()
    assert current is not None and current.version == "v0002"
    assert registry.versions() == ["v0001", "v0002", "v0003"]
    assert registry.serving_choice().name == "v0002"
    # The alert "below its baseline K retrains in a row" counts from the newest version back.
    assert registry.below_baseline_streak() == 1
    registry.register(predictor, evaluation, DataRange.of(frame))
    assert registry.below_baseline_streak() == 2

    # A person may override the gate; the pointer says so.
    registry.promote("v0001", "promoted by hand for a comparison")
    assert registry.serving_choice().name == "v0001"
    assert json.loads(registry.storage.read("current.json"))["reason"].startswith(
        "promoted by hand"
    )
    with pytest.raises(FileNotFoundError):
        registry.promote("v0099", "no such version")


def test_local_storage_is_atomic_and_confined(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("a/b.json", b"1")
    storage.write("a/b.json", b"2")
    assert storage.read("a/b.json") == b"2"
    assert storage.children("a") == ["b.json"]
    assert storage.children("missing") == []
    assert not storage.exists("a/c")
    with pytest.raises(ValueError, match="escapes"):
        storage.write("../outside", b"x")
    with pytest.raises(FileNotFoundError):
        storage.read("a/c")


@pytest.mark.parametrize(
    ("folders", "complete", "current", "keep", "doomed"),
    [
        # The newest `keep` complete versions stay.
        (["v1", "v2", "v3", "v4"], ["v1", "v2", "v3", "v4"], None, 2, ["v1", "v2"]),
        # The serving version stays however old.
        (["v1", "v2", "v3", "v4"], ["v1", "v2", "v3", "v4"], "v1", 1, ["v2", "v3"]),
        # A folder without a manifest: a crash's leftover if older than the newest complete
        # version, a training still writing if newer.
        (["v1", "v2", "v3", "v4"], ["v1", "v3"], None, 1, ["v1", "v2"]),
        # Nothing complete yet: nothing to judge an incomplete folder by.
        (["v1"], [], None, 1, []),
        (["v1", "v2"], ["v1", "v2"], "v2", 5, []),
    ],
)
def test_prunable_keeps_the_newest_and_the_serving_version(
    folders: list[str], complete: list[str], current: str | None, keep: int, doomed: list[str]
) -> None:
    assert prunable(folders, complete, current, keep) == doomed


@pytest.mark.parametrize(
    ("promoted_newest_first", "streak"),
    [([], 0), ([True, False], 0), ([False, False, True, False], 2), ([False] * 3, 3)],
)
def test_below_baseline_streak_stops_at_the_newest_promoted_version(
    promoted_newest_first: list[bool], streak: int
) -> None:
    assert below_baseline_streak(promoted_newest_first) == streak


def test_prunable_keeps_at_least_one() -> None:
    with pytest.raises(ValueError, match="keep at least one"):
        prunable(["v1"], ["v1"], None, 0)


def test_local_storage_deletes_folders_but_not_its_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("versions/v0001/model.keras", b"x")
    storage.write("versions/v0001/extra/report.md", b"y")
    storage.delete("versions/v0001")
    assert storage.children("versions") == []
    storage.delete("versions/v0009")  # absent: nothing happens
    with pytest.raises(ValueError, match="root"):
        storage.delete(".")
