"""The README's first command end to end, and its dashboard in a real browser.

One run of `scripts/run-local` from a clean state (a fresh state folder and a symbol no earlier run
used, so its topics, Spark checkpoint, HDFS partitions and model registry are all new) until its
first forecast; at that moment headless Debian Chromium opens the dashboard, finds the candle
chart and the forecast, and saves screenshots under test-artifacts/; then SIGINT, as a terminal's
Ctrl-C, and no process the command started may be left. Two shorter runs are stopped once Spark
runs: one by Ctrl-C with the output piped into `tee` (which dies with the same signal), one by
SIGKILL of the runner alone; nothing may be left either. A short last test points a dashboard
at a closed port: the page says Kafka is unreachable in words, with no traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import pytest
from browser_support import ARTIFACTS, chromium, page_text, screenshot
from kafka import KafkaAdminClient
from net_support import free_port
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cryptopipe_dashboard.readers.kafka_reader import read_forecasts
from cryptopipe_jobs.local import plan
from cryptopipe_jobs.storage.hdfs_storage import webhdfs_client
from cryptopipe_schemas import topics

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# Every process the command starts inherits this variable: how leftovers are found in /proc.
MARK = "CRYPTOPIPE_E2E_RUN"
FIRST_FORECAST = re.compile(r"first forecast after (\d+) s\. Dashboard: (http://\S+)")
FRESHNESS = re.compile(r"Data freshness: (fresh|STALE): newest trade")


def _marked(token: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries our mark."""
    needle = f"{MARK}={token}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
        except OSError:
            continue  # gone meanwhile, or a zombie
    return found


def _wait_for(driver: WebDriver, what: str, ready: Callable[[str], bool], seconds: float) -> str:
    # The text that satisfied `ready`, not a second read: a rerun of the page between two reads
    # can show it mid-way (a fresh-clone CI run read a Pipelines page without its freshness line).
    seen: list[str] = []

    def satisfied(d: WebDriver) -> bool:
        seen.append(page_text(d))
        return ready(seen[-1])

    try:
        WebDriverWait(driver, seconds, poll_frequency=1).until(satisfied)
    except TimeoutException:
        shot = screenshot(driver, "timeout")
        pytest.fail(
            f"no {what} after {seconds:.0f} s (screenshot {shot}); page:\n{page_text(driver)}"
        )
    return seen[-1]


def _let_images_load(driver: WebDriver, seconds: float = 30) -> None:
    """For the screenshot: the training report's plots (served from /media/) drawn, if any come."""
    loaded = (
        "return Array.from(document.images).filter("
        "i => i.src.includes('/media/') && i.complete && i.naturalWidth > 0).length"
    )
    # The screenshot shows whatever is there by then: the plots are not what this test checks.
    with suppress(TimeoutException):
        WebDriverWait(driver, seconds, poll_frequency=1).until(lambda d: d.execute_script(loaded))


def _assert_no_traceback(driver: WebDriver) -> None:
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert "Traceback" not in page_text(driver)


# In one script, so a chart that Streamlit redraws meanwhile cannot go stale half-way.
_COUNT_MARKS = """
return Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]')).map(chart => {
  const counts = {};
  chart.querySelectorAll("g.role-mark").forEach(group => {
    const kind = (group.getAttribute("aria-roledescription") || "").replace(" mark container", "");
    counts[kind] = (counts[kind] || 0) + group.children.length;
  });
  return counts;
});
"""


def _marks(driver: WebDriver) -> list[dict[str, int]]:
    """For each Altair chart on the page, how many items Vega drew per mark type (svg)."""
    charts: list[dict[str, int]] = driver.execute_script(_COUNT_MARKS)
    return charts


class Transcript:
    """The command's output, kept in a file and searched as it arrives."""

    def __init__(self, stream: IO[str], log: Path) -> None:
        self.lines: list[str] = []
        self.log = log
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with self.log.open("w") as out:
            for line in stream:
                out.write(line)
                out.flush()
                self.lines.append(line)

    def find(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        for line in list(self.lines):
            if match := pattern.search(line):
                return match
        return None

    def tail(self, count: int = 40) -> str:
        return "".join(self.lines[-count:])


def _stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], token: str) -> None:
    """Ctrl-C to the command's process group; anything marked still alive after it is killed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in _marked(token):
        os.kill(pid, signal.SIGKILL)


def _wait_healthy(address: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{address}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the dashboard did not start:\n{log.read_text(errors='replace')}")


def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        if wanted := [name for name in names if name in existing]:
            admin.delete_topics(wanted)
    finally:
        admin.close()


@pytest.mark.timeout(1500)
def test_run_local_reaches_a_forecast_on_the_dashboard_and_ctrl_c_leaves_nothing(
    spark_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    symbol = f"BTC{uuid.uuid4().hex[:10].upper()}"  # new topics, checkpoint and partitions
    token = uuid.uuid4().hex
    ARTIFACTS.mkdir(exist_ok=True)
    dashboard_port = free_port()
    command = _run_local(symbol, tmp_path / "state", dashboard_port)
    began = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, MARK: token},
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    assert proc.stdout is not None
    transcript = Transcript(proc.stdout, ARTIFACTS / f"run-local-{symbol.lower()}.log")
    try:
        first: re.Match[str] | None = None
        while first is None and proc.poll() is None and time.monotonic() - began < 1200:
            time.sleep(1)
            first = transcript.find(FIRST_FORECAST)
        assert first is not None, (
            f"no first forecast (exit code {proc.poll()}); output:\n{transcript.tail()}"
        )
        seconds = time.monotonic() - began
        with capsys.disabled():
            print(
                f"\nrun-local: first forecast {seconds:.0f} s after the command "
                f"(it reports {first.group(1)} s); log {transcript.log}"
            )
        address = first.group(2)
        assert address == f"http://127.0.0.1:{dashboard_port}"

        # What the predictor has published: the page must show this model serving.
        published = read_forecasts(spark_env["CRYPTOPIPE_KAFKA_BOOTSTRAP"], symbol, 1000)
        assert published.value is not None and not published.value.empty, published.problem
        models = set(published.value["model"])

        with chromium(tmp_path / "chromium", window="1400,1100") as driver:
            driver.get(address)
            # Vega draws the chart after the page's text arrives: wait for the forecast's layer.
            text = _wait_for(
                driver,
                "candles with a forecast",
                lambda t: "Serving:" in t and "area" in next(iter(_marks(driver)), {}),
                seconds=120,
            )
            _assert_no_traceback(driver)
            assert "Last close" in text and "Forecast accuracy" in text
            serving = re.search(r"Serving: (\S+)", text)
            assert serving is not None and serving.group(1) in models, (serving, models)
            # The candle chart (charts.candlestick): a rule (wick) and a bar per candle, here
            # and in the volume pane; the forecast's band (area) and one point per step.
            candles = _marks(driver)[0]
            horizon = plan.pipeline_manifest(symbol, live=False)["spec"]["model"]["horizon"]
            assert candles.get("rule", 0) >= 100 and candles.get("rect", 0) >= 200, candles
            assert candles.get("area") == 1 and candles.get("symbol") == horizon, candles
            shots = [screenshot(driver, f"dashboard-market-{symbol.lower()}")]

            driver.get(f"{address}/pipelines")
            text = _wait_for(
                driver,
                "training report and data freshness",
                lambda t: "Latest version" in t and FRESHNESS.search(t) is not None,
                60,
            )
            _assert_no_traceback(driver)
            _let_images_load(driver)
            shots.append(screenshot(driver, f"dashboard-pipelines-{symbol.lower()}"))
        with capsys.disabled():
            print(f"screenshots: {', '.join(map(str, shots))}")

        running = _marked(token)
        names = " ".join(running.values())
        for stage in ("cryptopipe_jobs.local.run", "aggregate.main", "predict.main", "streamlit"):
            assert stage in names, f"{stage} is not running: {running}"
        assert any("java" in line for line in running.values()), "no Spark JVM among them"

        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 0, transcript.tail()
        left = _marked(token)
        assert not left, f"processes left after Ctrl-C: {left}"
    finally:
        _stop(proc, token)
        _remove_run_data(spark_env, symbol, tmp_path)


def _run_local(symbol: str, state: Path, dashboard_port: int) -> list[str]:
    return [
        str(REPO / "scripts" / "run-local"),
        "--symbols", symbol,
        "--state", str(state),
        "--dashboard-port", str(dashboard_port),
        "--metrics-ports", f"{free_port()},{free_port()}",
    ]  # fmt: skip


def _remove_run_data(spark_env: dict[str, str], symbol: str, state: Path) -> None:
    """The run's topics and Spark checkpoint, so the next test starts from nothing."""
    _delete_topics(
        spark_env["CRYPTOPIPE_KAFKA_BOOTSTRAP"],
        [topics.trades(symbol), topics.candles("1h", symbol), topics.forecasts(symbol)],
    )
    options = plan.Options([symbol], live=False, data=None, state=state, repo=REPO)
    checkpoint = plan.checkpoint(options, plan.Endpoints.from_env(spark_env))
    webhdfs_client(spark_env["CRYPTOPIPE_WEBHDFS_URL"]).delete(
        urlparse(checkpoint).path, recursive=True
    )


def _wait_marked(token: str, what: str, present: Callable[[dict[int, str]], bool]) -> None:
    deadline = time.monotonic() + 300
    while not present(_marked(token)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {_marked(token)}"
        time.sleep(1)


def _spark_running(running: dict[int, str]) -> bool:
    """The run is in stage 3: a Spark JVM of its own (the Hive DDL's or the aggregator's)."""
    return any("java" in line for line in running.values())


def _wait_gone(token: str, seconds: float = 90) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    while (left := _marked(token)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def _ctrl_c(proc: subprocess.Popen[bytes], token: str) -> None:
    """A terminal's Ctrl-C: the whole group, tee too (the runner's next line then hits EPIPE)."""
    os.killpg(proc.pid, signal.SIGINT)


def _sigkill_runner(proc: subprocess.Popen[bytes], token: str) -> None:
    """SIGKILL of the Python runner alone (not the `uv run` in front): none of its code runs."""
    (runner,) = [
        pid
        for pid, line in _marked(token).items()
        if "local.run" in line and Path(line.split()[0]).name.startswith("python")
    ]
    os.kill(runner, signal.SIGKILL)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("output", "stop"),
    [("| tee {log}", _ctrl_c), ("> {log} 2>&1", _sigkill_runner)],
    ids=["ctrl-c-piped-into-tee", "sigkill-of-the-runner"],
)
def test_a_run_stopped_once_spark_runs_leaves_nothing(
    spark_env: dict[str, str],
    tmp_path: Path,
    output: str,
    stop: Callable[[subprocess.Popen[bytes], str], None],
) -> None:
    symbol = f"BTC{uuid.uuid4().hex[:10].upper()}"
    token = uuid.uuid4().hex
    log = tmp_path / "run.log"
    command = shlex.join(_run_local(symbol, tmp_path / "state", free_port()))
    redirected = f"{command} 2>&1 {output.format(log=shlex.quote(str(log)))}"
    proc = subprocess.Popen(
        ["bash", "-c", redirected],
        stdout=subprocess.DEVNULL,
        env={**os.environ, MARK: token},
        start_new_session=True,  # bash, the runner (and tee): one process group, as in a terminal
    )
    try:
        _wait_marked(token, "a Spark JVM of the run", _spark_running)
        stop(proc, token)
        proc.wait(timeout=120)
        left = _wait_gone(token)
        assert not left, f"processes left: {left}\n{log.read_text()}"
    finally:
        _stop(proc, token)
        _remove_run_data(spark_env, symbol, tmp_path)


@pytest.mark.timeout(180)
def test_the_dashboard_says_in_words_that_kafka_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()  # nothing listens there
    options = plan.Options(
        ["BTCUSDT"], live=False, data=None, state=tmp_path, repo=REPO, dashboard_port=free_port()
    )
    endpoints = plan.Endpoints(f"127.0.0.1:{closed}", "hdfs://unused", "http://unused", "", "")
    stage = plan.dashboard(options, endpoints)
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        server = subprocess.Popen(stage.argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        address = f"http://127.0.0.1:{options.dashboard_port}"
        _wait_healthy(address, server, log)
        with chromium(tmp_path / "chromium", window="1400,1100") as driver:
            driver.get(address)
            text = _wait_for(
                driver, "Kafka message", lambda t: "Kafka is not reachable" in t, seconds=60
            )
            _assert_no_traceback(driver)
            assert f"candles ({topics.candles('1h', 'BTCUSDT')})" in text
            shot = screenshot(driver, "dashboard-kafka-unreachable")
            with capsys.disabled():
                print(f"\nscreenshot: {shot}")

            driver.get(f"{address}/pipelines")
            text = _wait_for(driver, "freshness", lambda t: "Data freshness" in t, seconds=60)
            _assert_no_traceback(driver)
            assert "Data freshness: unknown (Kafka is not reachable" in text
    finally:
        server.terminate()
        server.wait(timeout=30)
