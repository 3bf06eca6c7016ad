"""The local run's safety nets, with real processes and sockets: the reaper stops what a killed
runner started, and a port something else holds is one line naming the holder and the flag."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cryptopipe_jobs.ports import PortInUse, ensure_free, holder

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "btcusdt.yaml"

# A stand-in runner: a reaper, one stage's process group, the down command, then it waits to
# be killed. It prints the stage's pid once all of that has been told to the reaper.
RUNNER = textwrap.dedent(
    """
    import subprocess, sys, time
    from cryptopipe_jobs.local.reaper import Reaper
    log = open(sys.argv[1], "ab")
    reaper = Reaper(log, grace=2)
    stage = subprocess.Popen(["sleep", "600"], start_new_session=True)
    reaper.watch_group(stage.pid)
    finished = subprocess.Popen(["true"], start_new_session=True)
    finished.wait()
    reaper.watch_group(finished.pid)
    reaper.forget_group(finished.pid)
    reaper.down_with(["touch", sys.argv[2]])
    if sys.argv[3] == "dismiss":
        reaper.dismiss()
    print(stage.pid, flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def _wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _start_runner(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    marker = tmp_path / "down-ran"
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp_path / "reaper.log"), str(marker), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    return runner, int(runner.stdout.readline()), marker


def test_a_killed_runner_s_stages_are_stopped_and_its_components_taken_down(
    tmp_path: Path,
) -> None:
    runner, stage, marker = _start_runner(tmp_path, "keep")
    try:
        assert _alive(stage)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        assert _wait_until(lambda: not _alive(stage), 15), "the stage outlived its runner"
        assert _wait_until(marker.exists, 15), (tmp_path / "reaper.log").read_text()
    finally:
        if _alive(stage):
            os.killpg(stage, signal.SIGKILL)


def test_a_runner_that_stopped_everything_itself_dismisses_the_reaper(tmp_path: Path) -> None:
    runner, stage, marker = _start_runner(tmp_path, "dismiss")
    try:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        time.sleep(1)
        assert _alive(stage), "a dismissed reaper must not act"
        assert not marker.exists()
    finally:
        os.killpg(stage, signal.SIGKILL)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_names_its_holder_and_the_flag(taken_port: int) -> None:
    assert (holder(taken_port) or "").startswith(f"pid {os.getpid()} (")
    with pytest.raises(PortInUse) as raised:
        ensure_free(taken_port, "--metrics-port")
    assert str(raised.value) == (
        f"port {taken_port} is in use by {holder(taken_port)}; "
        "stop it or choose another port with --metrics-port"
    )
    ensure_free(0, "--metrics-port")  # 0: no server, nothing to check


def test_a_free_port_passes_and_has_no_holder() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert holder(port) is None
    ensure_free(port, "--metrics-port")


def _one_line_refusal(argv: list[str], tmp_path: Path) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    return output


def test_the_local_run_refuses_a_taken_port_in_one_line_before_starting_anything(
    taken_port: int, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "cryptopipe_jobs.local.run", "--state", str(tmp_path)]
    output = _one_line_refusal([*argv, "--dashboard-port", str(taken_port)], tmp_path)
    refusal = PortInUse(taken_port, "--dashboard-port", holder(taken_port))
    assert output == f"[cryptopipe] cannot start: {refusal}"
    assert not (tmp_path / "logs").exists(), "nothing may start when a port is taken"


# Unreachable addresses: the port is checked before anything is contacted.
NOWHERE = ["--bootstrap-servers", "127.0.0.1:1"]
JOBS = {
    "producer.main": NOWHERE,
    "aggregate.main": [*NOWHERE, "--hdfs-url", "hdfs://127.0.0.1:1"],
    "predict.main": [*NOWHERE, "--registry", "/nonexistent"],
}


@pytest.mark.parametrize("module", JOBS, ids=lambda module: module.split(".")[0])
def test_each_job_refuses_a_taken_metrics_port_in_one_line(
    module: str, taken_port: int, tmp_path: Path
) -> None:
    argv = [
        sys.executable,
        "-m",
        f"cryptopipe_jobs.{module}",
        "--spec",
        str(EXAMPLE),
        *JOBS[module],
    ]
    output = _one_line_refusal([*argv, "--metrics-port", str(taken_port)], tmp_path)
    # TensorFlow's own start-up lines may come first (the predictor imports it).
    refusal = PortInUse(taken_port, "--metrics-port", holder(taken_port))
    assert output.splitlines()[-1].endswith(f": invalid configuration: {refusal}"), output
