"""The whole pipeline on this machine: replay (or live trades) -> Kafka -> Spark candles ->
training -> forecasts -> dashboard at http://127.0.0.1:8501.

    scripts/run-local [--symbols BTCUSDT] [--live] [--data PATH] [--until-first-forecast]
        [--state DIR] [--dashboard-port 8501] [--metrics-ports 9108,9109]

Ctrl-C stops every process it started (the test bed components too, if it started them); if
the runner itself is killed, its reaper (local/reaper.py) does that instead. Running it again
resumes: the producer continues after the last trade in Kafka, Spark from its checkpoint on
HDFS, the predictor from its committed offsets.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition

from cryptopipe_jobs.local import plan
from cryptopipe_jobs.local.reaper import Reaper, terminate_groups
from cryptopipe_jobs.ports import PortInUse, ensure_free
from cryptopipe_jobs.producer.committed import CommittedRecords
from cryptopipe_jobs.storage.hdfs_storage import hdfs_path, webhdfs_client
from cryptopipe_jobs.train.committed import CommittedCandles
from cryptopipe_jobs.train.sources import default_candles
from cryptopipe_schemas import topics
from cryptopipe_schemas.kafka_auth import client_config
from cryptopipe_schemas.spec import load_spec_file

# postgres too: `up hive` starts it as the metastore's database, and a run stops what it started.
COMPONENTS = ["kafka", "spark", "hdfs", "postgres", "hive"]


class StageFailed(RuntimeError):
    pass


def _write(text: str) -> None:
    """Progress output, which must never stop a run or its clean-up: when the reader is gone
    (`| tee` dies with the same Ctrl-C) the rest goes to /dev/null."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def say(message: str) -> None:
    _write(f"[cryptopipe] {message}\n")


def bar(label: str, done: int, total: int | None, width: int = 30) -> None:
    if total:
        filled = min(width, int(width * done / total))
        line = f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}"
    else:
        line = f"\r  {label} {done:,}"
    _write(line)


@dataclass
class Supervisor:
    logs: Path
    reaper: Reaper
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, stage: plan.Stage, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.log_path(stage.name)
        with open(log, "ab") as out:
            out.write(f"\n$ {shlex.join(stage.argv)}\n".encode())
            proc = subprocess.Popen(
                stage.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.reaper.watch_group(proc.pid)
        self.started.append((stage.name, proc))
        return proc

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name.replace(' ', '-').lower()}.log"

    def tail(self, name: str, lines: int = 25) -> str:
        text = self.log_path(name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check(self, allowed_to_finish: set[str]) -> None:
        for name, proc in self.started:
            code = proc.poll()
            if code is not None and (code != 0 or name not in allowed_to_finish):
                raise StageFailed(f"{name} exited with {code}:\n{self.tail(name)}")

    def finished(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """A one-off stage that ended well: nothing of it is left to watch or stop."""
        self.started.remove((name, proc))
        self.reaper.forget_group(proc.pid)

    def stop_all(self) -> None:
        # A terminal's Ctrl-C reaches uv and us; a second one must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        running = [(name, proc) for name, proc in reversed(self.started) if proc.poll() is None]
        for name, _ in running:
            say(f"stopping {name}")
        terminate_groups(proc.pid for _, proc in running)
        for _, proc in running:
            proc.wait()


def ports_in_use(options: plan.Options) -> list[PortInUse]:
    """The ports this run's processes will listen on that something else holds now."""
    metrics = (
        "--metrics-ports PRODUCER,AGGREGATOR "
        f"(now {options.producer_metrics_port},{options.aggregator_metrics_port})"
    )
    everywhere = "0.0.0.0"  # noqa: S104 - where the metrics servers listen
    wanted = [
        (options.dashboard_port, "--dashboard-port", "127.0.0.1"),
        (options.producer_metrics_port, metrics, everywhere),
        (options.aggregator_metrics_port, metrics, everywhere),
    ]
    taken = []
    for port, flag, host in wanted:
        try:
            ensure_free(port, flag, host)
        except PortInUse as error:
            taken.append(error)
    return taken


def testbed_argv(repo: Path, *args: str) -> list[str]:
    return [str(repo / "scripts" / "testbed"), *args]


def testbed(repo: Path, *args: str, show: bool = False) -> str:
    """Run scripts/testbed; its output goes to the terminal when `show`, else is returned."""
    result = subprocess.run(
        testbed_argv(repo, *args),
        capture_output=not show,
        text=True,
        check=False,
    )
    if result.returncode != 0 and args[0] != "status":
        raise StageFailed(
            f"scripts/testbed {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
        )
    return result.stdout or ""


def down_components(status: str) -> list[str]:
    """The components `scripts/testbed status` reports as not healthy."""
    rows = (line.split() for line in status.splitlines())
    return [row[0] for row in rows if len(row) > 2 and row[0] in COMPONENTS and row[2] != "healthy"]


def testbed_env(repo: Path) -> dict[str, str]:
    env = {}
    for line in testbed(repo, "env", *COMPONENTS).splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(
        **client_config(), bootstrap_servers=bootstrap, request_timeout_ms=5000
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()


def wait_for(
    what: str,
    progress: Callable[[], int],
    done: Callable[[int], bool],
    supervisor: Supervisor,
    total: int | None = None,
    finishing: frozenset[str] = frozenset(),
    timeout: float = 3600,
    poll_seconds: float = 1,
) -> int:
    deadline = time.monotonic() + timeout
    value = progress()
    while not done(value):
        supervisor.check(set(finishing))
        if time.monotonic() > deadline:
            raise StageFailed(f"timed out waiting for {what}")
        time.sleep(poll_seconds)
        value = progress()
        bar(what, value, total)
    bar(what, value, total)
    _write("\n")
    return value


def expected_trades(options: plan.Options) -> int | None:
    """Trades the bundled recording replays into (a progress total); unknown otherwise."""
    if options.live or options.data:
        return None
    from cryptopipe_jobs.producer import recorded, replay

    klines = recorded.load_embedded()[-plan.REPLAY_TAIL :]
    return len(replay.klines_to_trades(klines, "BTCUSDT", "coinbase"))


def committed_candles(
    options: plan.Options, endpoints: plan.Endpoints, symbol: str
) -> CommittedCandles:
    """What the trainer will read: the model interval's parquet candles on HDFS."""
    spec = load_spec_file(str(plan.spec_path(options, symbol)))
    folder = hdfs_path(default_candles(spec, endpoints.hdfs_url))
    return CommittedCandles(webhdfs_client(endpoints.webhdfs_url), folder)


def write_specs(options: plan.Options) -> None:
    options.state.mkdir(parents=True, exist_ok=True)
    for symbol in options.symbols:
        plan.spec_path(options, symbol).write_text(
            # A user's own recording (--data) is replayed whole.
            yaml.safe_dump(
                plan.pipeline_manifest(
                    symbol, options.live, 0 if options.data else plan.REPLAY_TAIL
                )
            )
        )


def run(options: plan.Options, until_first_forecast: bool) -> int:
    began = time.monotonic()
    for error in (taken := ports_in_use(options)):
        say(f"cannot start: {error}")
    if taken:
        return 2
    logs = options.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "reaper.log", "ab") as reaper_log:
        reaper = Reaper(reaper_log)
    supervisor = Supervisor(logs, reaper)
    started_here = down_components(testbed(options.repo, "status", *COMPONENTS))
    if started_here:
        reaper.down_with(testbed_argv(options.repo, "down", *reversed(started_here)))
    try:
        say(
            "stage 1/6: local components (Kafka, Spark, HDFS, Hive metastore); "
            "first run installs them"
        )
        testbed(options.repo, "up", *COMPONENTS, show=True)
        endpoints = plan.Endpoints.from_env(testbed_env(options.repo))
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        write_specs(options)
        symbol = options.symbols[0]
        say(
            "stage 2/6: producer"
            + (" (live Binance trades)" if options.live else " (replaying real prices)")
        )
        supervisor.start(plan.producer(options, endpoints), env)
        say("stage 3/6: Spark aggregation into HDFS, Hive and the candles topic")
        for name in options.symbols:
            run_to_end(supervisor, plan.hive_ddl(options, endpoints, name), env)
        supervisor.start(plan.aggregator(options, endpoints), env)
        total = expected_trades(options)
        trades_topic = topics.trades(symbol)
        if total is not None:
            replayed = CommittedRecords(endpoints.kafka_bootstrap, trades_topic)
            try:
                wait_for("replay", replayed.count, lambda n: n >= total, supervisor, total,
                         frozenset({"producer"}))  # fmt: skip
            finally:
                replayed.close()
        needed = 1000 if not options.live else 60
        for name in options.symbols:
            committed = committed_candles(options, endpoints, name)
            wait_for(f"hourly candles of {name} on HDFS", committed.count,
                     lambda n: n >= needed, supervisor, None, frozenset({"producer"}),
                     poll_seconds=5)  # fmt: skip
        say("stage 4/6: training a small LSTM and its baselines")
        for name in options.symbols:
            trainer = plan.trainer(options, endpoints, name)
            run_to_end(supervisor, trainer, env)
            say("  " + supervisor.tail(trainer.name, 4).replace("\n", "\n  "))
        say("stage 5/6: predictor")
        for name in options.symbols:
            supervisor.start(plan.predictor(options, endpoints, name), env)
        say("stage 6/6: dashboard")
        supervisor.start(plan.dashboard(options, endpoints), env)
        finished = frozenset({"producer", *(f"trainer {name}" for name in options.symbols)})
        forecasts_topic = topics.forecasts(symbol)
        wait_for("first forecast", lambda: end_offset(endpoints.kafka_bootstrap, forecasts_topic),
                 lambda n: n > 0, supervisor, None, finished, timeout=900)  # fmt: skip
        address = f"http://127.0.0.1:{options.dashboard_port}"
        _wait_http(f"{address}/_stcore/health", supervisor, finished)
        seconds = time.monotonic() - began
        say(f"first forecast after {seconds:.0f} s. Dashboard: {address}")
        (options.state / "last-run.json").write_text(
            json.dumps({"seconds_to_first_forecast": round(seconds, 1)})
        )
        if until_first_forecast:
            return 0
        say("running; Ctrl-C stops everything")
        while True:
            supervisor.check(set(finished))
            time.sleep(2)
    except KeyboardInterrupt:
        say("Ctrl-C: stopping")
        return 0
    except StageFailed as error:
        say(f"failed: {error}")
        return 1
    finally:
        supervisor.stop_all()
        if started_here:
            testbed(options.repo, "down", *reversed(started_here))
            say(f"stopped {', '.join(started_here)}")
        reaper.dismiss()


def run_to_end(supervisor: Supervisor, stage: plan.Stage, env: dict[str, str]) -> None:
    """A one-off stage (DDL, training), while the long-running ones are watched."""
    proc = supervisor.start(stage, env)
    while proc.poll() is None:
        supervisor.check({"producer", stage.name})
        time.sleep(1)
    if proc.returncode != 0:
        raise StageFailed(f"{stage.name} failed:\n{supervisor.tail(stage.name)}")
    supervisor.finished(stage.name, proc)


def _wait_http(
    url: str, supervisor: Supervisor, finishing: frozenset[str], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check(set(finishing))
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own dashboard
                return
        except OSError:
            time.sleep(1)
    raise StageFailed(f"the dashboard did not answer at {url}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/run-local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--symbols", default="BTCUSDT", help="comma-separated Binance symbols")
    parser.add_argument(
        "--live", action="store_true", help="stream from Binance instead of replaying"
    )
    parser.add_argument(
        "--data", help="replay these Binance kline/trade files instead of the bundled data"
    )
    parser.add_argument(
        "--state", type=Path, default=Path.home() / ".local" / "share" / "cryptopipe" / "local"
    )
    parser.add_argument(
        "--until-first-forecast", action="store_true", help="stop once the first forecast exists"
    )
    parser.add_argument(
        "--dashboard-port", type=int, default=plan.DASHBOARD_PORT, help="on 127.0.0.1"
    )
    parser.add_argument(
        "--metrics-ports",
        type=_port_pair,
        default=(plan.PRODUCER_METRICS_PORT, plan.AGGREGATOR_METRICS_PORT),
        metavar="PRODUCER,AGGREGATOR",
        help="Prometheus ports of the producer and the aggregator (0 turns one off)",
    )
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[3]
    options = plan.Options(
        symbols=[s.strip().upper() for s in args.symbols.split(",") if s.strip()],
        live=args.live, data=args.data, state=args.state, repo=repo,
        dashboard_port=args.dashboard_port,
        producer_metrics_port=args.metrics_ports[0], aggregator_metrics_port=args.metrics_ports[1],
    )  # fmt: skip
    signal.signal(signal.SIGTERM, _interrupt)
    # Started in the background of a non-interactive shell, a command inherits SIGINT ignored
    # and Python then installs no KeyboardInterrupt handler: Ctrl-C must still stop the run.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run(options, args.until_first_forecast)


def _port_pair(text: str) -> tuple[int, int]:
    producer, _, aggregator = text.partition(",")
    try:
        return int(producer), int(aggregator)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two ports such as 9108,9109") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the run as Ctrl-C does


if __name__ == "__main__":
    raise SystemExit(main())
