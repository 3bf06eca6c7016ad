"""The process manager with real processes: what `down` stops, and what a failed start shows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptopipe_testbed import process

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def private_run_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CRYPTOPIPE_TESTBED_RUN", str(tmp_path / "run"))
    yield


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] not in {"Z", "X"}:
                members.append(int(entry.name))
    return members


def test_stop_ends_the_daemon_and_its_children() -> None:
    daemon = process.Daemon("sleeper", ["sh", "-c", "sleep 300 & sleep 300 & wait"])
    pid = process.start(daemon)
    assert process.start(daemon) == pid  # starting twice is safe
    deadline = time.monotonic() + 5
    while len(_group_members(pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group_members(pid)) == 3
    assert process.stop("sleeper", timeout=5)
    assert _group_members(pid) == []
    assert process.running_pid("sleeper") is None
    assert not process.stop("sleeper")


def test_a_daemon_that_dies_fails_fast_with_its_log_tail() -> None:
    process.start(process.Daemon("crasher", ["sh", "-c", "echo 'bind: address in use'; exit 3"]))
    began = time.monotonic()
    with pytest.raises(process.StartError, match="bind: address in use"):
        process.wait_until(lambda: False, what="crasher", logs=["crasher"], timeout=30)
    assert time.monotonic() - began < 10


def test_a_failed_one_off_step_raises_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(process.StartError, match="no such schema"):
        process.run(["sh", "-c", "echo no such schema >&2; exit 1"], log=tmp_path / "step.log")


def test_env_reaches_the_daemon() -> None:
    process.start(
        process.Daemon("printer", ["sh", "-c", "echo value=$X; sleep 30"], env={"X": "42"})
    )
    deadline = time.monotonic() + 5
    while "value=42" not in process.log_tail("printer") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "value=42" in process.log_tail("printer")
    process.stop("printer")
    assert os.environ.get("X") != "42"
