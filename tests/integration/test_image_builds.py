"""Every image under images/, built with podman (the layer cache makes a warm build take
seconds) and run for real: each entry point answers, and each image does its job once against
the test bed with host networking, on ports and databases of its own."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from hdfs import HdfsError, InsecureClient
from kafka import KafkaConsumer, TopicPartition

from cryptopipe_jobs.producer.recorded import load_embedded
from cryptopipe_schemas import topics
from cryptopipe_schemas.codec import decode
from cryptopipe_testbed import thrift_probe, versions
from cryptopipe_testbed.components import hive, images, postgres
from cryptopipe_testbed.hadoop_conf import site_xml
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

PYTHON_IMAGES = ("operator", "producer", "spark", "trainer", "dashboard")
# What each Python image must not carry: the other members' heavy dependencies.
FOREIGN = {
    "operator": ("pyspark", "tensorflow", "streamlit", "cryptopipe_jobs"),
    "producer": ("pyspark", "tensorflow", "streamlit", "kopf", "cryptopipe_model"),
    "spark": ("tensorflow", "streamlit", "kopf", "cryptopipe_model"),
    "trainer": ("pyspark", "streamlit", "kopf"),
    "dashboard": ("pyspark", "tensorflow", "kopf", "cryptopipe_jobs"),
}


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[float, int]]:
    """Builds every image from the working tree once per module; unchanged layers are reused."""
    return images.build()


def _podman(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **images.podman_env()},
        check=False,
    )


def _run(name: str, *args: str, options: Sequence[str] = (), timeout: float = 180) -> str:
    """Run an image to completion on the host network; its output (stdout and stderr)."""
    result = _podman(
        "run", "--rm", "--network=host", *options, images.reference(name), *args, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} {args} exited {result.returncode}:\n{output[-4000:]}"
    return output


@contextlib.contextmanager
def _daemon(name: str, *args: str, options: Sequence[str] = ()) -> Iterator[Callable[[], str]]:
    """Run an image in the background; yields a function returning its log so far."""
    container = f"cryptopipe-test-{name}-{uuid.uuid4().hex[:8]}"
    started = _podman(
        "run", "-d", "--name", container, "--network=host", *options, images.reference(name), *args
    )
    assert started.returncode == 0, started.stderr

    def logs() -> str:
        result = _podman("logs", container)
        return result.stdout + result.stderr

    try:
        yield logs
    finally:
        _podman("stop", "--time", "10", container)
        _podman("rm", "--force", container)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the images' non-root user (uid 10001) can read and write."""
    path = Path(tempfile.mkdtemp(prefix="cryptopipe-images-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait(check: Callable[[], bool], what: str, logs: Callable[[], str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(1)
    pytest.fail(f"{what} not within {timeout:.0f}s; container log:\n{logs()[-6000:]}")


@pytest.mark.parametrize(
    ("name", "options", "args", "expected"),
    [
        ("operator", [], ["--help"], "usage: cryptopipe-operator"),
        ("producer", [], ["--help"], "usage: cryptopipe-producer"),
        ("spark", [], ["--help"], "usage: cryptopipe-aggregate"),
        ("trainer", [], ["--help"], "usage: cryptopipe-train"),
        ("trainer", ["--entrypoint=cryptopipe-predict"], ["--help"], "usage: cryptopipe-predict"),
        ("dashboard", ["--entrypoint=streamlit"], ["version"], "Streamlit, version 1.67.0"),
        ("hadoop", [], ["version"], f"Hadoop {versions.HADOOP}"),
        ("hadoop", [], ["help"], "hdfs-entrypoint namenode"),
        ("hive-metastore", [], ["version"], versions.HIVE_METASTORE),
        ("hive-metastore", [], ["help"], "metastore-entrypoint start"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_entry_point_answers(
    built: dict[str, tuple[float, int]],
    name: str,
    options: list[str],
    args: list[str],
    expected: str,
) -> None:
    assert expected in _run(name, *args, options=options)


@pytest.mark.parametrize("name", [image.name for image in images.IMAGES])
def test_image_runs_as_non_root_and_is_labelled(
    built: dict[str, tuple[float, int]], name: str
) -> None:
    result = _podman("image", "inspect", images.reference(name))
    (config,) = json.loads(result.stdout)
    assert config["Config"]["User"] == "10001:10001"
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == f"cryptopipe-{name}"
    assert labels["org.opencontainers.image.version"] == images.project_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_python_image_holds_only_its_own_member(
    built: dict[str, tuple[float, int]], name: str
) -> None:
    probe = (
        "import importlib.util as u, json; "
        f"print(json.dumps([m for m in {list(FOREIGN[name])!r} if u.find_spec(m)]))"
    )
    output = _run(name, "-c", probe, options=["--entrypoint=python"])
    assert json.loads(output.strip().splitlines()[-1]) == []


def test_producer_image_replays_100_real_trades_into_kafka(
    built: dict[str, tuple[float, int]], kafka_bootstrap: str, shared_dir: Path
) -> None:
    symbol = f"IMG{uuid.uuid4().hex[:8].upper()}USDT"
    klines = [kline for kline in load_embedded() if kline.volume > 0][:25]  # 4 trades each
    with (shared_dir / "klines.csv").open("w") as out:
        for k in klines:
            close_time = k.open_time_ms + 3_600_000 - 1
            out.write(f"{k.open_time_ms},{k.open},{k.high},{k.low},{k.close},{k.volume},")
            out.write(f"{close_time},0,0,0,0,0\n")
    spec = {"symbol": symbol, "source": {"kind": "replay", "replay": {"speed": 0}}}
    (shared_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    _run(
        "producer",
        *("--spec", "/work/spec.yaml", "--data", "/work/klines.csv"),
        *("--bootstrap-servers", kafka_bootstrap, "--metrics-port", "0"),
        options=[f"--volume={shared_dir}:/work:ro"],
    )
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=5000)
    try:
        partition = TopicPartition(topics.trades(symbol), 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values = [message.value for message in consumer]
    finally:
        consumer.close()
    assert len(values) == 100
    records = [decode(value).record for value in values]
    assert {record["symbol"] for record in records} == {symbol}
    assert records[0]["price"] == klines[0].open


def test_dashboard_image_answers_its_health_endpoint(
    built: dict[str, tuple[float, int]],
) -> None:
    (port,) = _free_ports(1)
    app = ["run", "/opt/cryptopipe/dashboard/app.py", f"--server.port={port}"]
    options = ["--entrypoint=streamlit"]
    flags = ["--server.address=127.0.0.1", "--server.headless=true"]
    with _daemon("dashboard", *app, *flags, options=options) as logs:

        def healthy() -> bool:
            url = f"http://127.0.0.1:{port}/_stcore/health"
            with urllib.request.urlopen(url, timeout=3) as response:
                return bool(response.read() == b"ok")

        _wait(healthy, "the dashboard's /_stcore/health", logs, timeout=90)


def test_trainer_image_trains_a_tiny_model_into_a_mounted_registry(
    built: dict[str, tuple[float, int]], shared_dir: Path
) -> None:
    model = {"interval": "1h", "lookback": 8, "horizon": 3, "layers": 1, "units": 4}
    model |= {"epochs": 1, "batchSize": 64, "coverage": 0.8}
    (shared_dir / "spec.yaml").write_text(yaml.safe_dump({"symbol": "BTCUSDT", "model": model}))
    _run(
        "trainer",
        *("--spec", "/work/spec.yaml", "--candles", "embedded", "--registry", "/work/registry"),
        *("--rows", "400", "--test-size", "60", "--folds", "2"),
        *("--result-file", "/work/result.json"),
        options=[f"--volume={shared_dir}:/work"],
        timeout=300,
    )
    outcome = json.loads((shared_dir / "result.json").read_text())
    assert outcome["version"] == "v0001"
    assert (shared_dir / "registry" / "versions" / "v0001").is_dir()


def test_spark_image_has_pyspark_its_launcher_and_exactly_the_connector_jars(
    built: dict[str, tuple[float, int]],
) -> None:
    python = ["--entrypoint=python"]
    assert _run("spark", "-c", "import pyspark; print(pyspark.__version__)", options=python).split(
        "\n"
    )[0] == (versions.SPARK)
    assert f"version {versions.SPARK}" in _run(
        "spark", "--version", options=["--entrypoint=spark-submit"]
    )
    listing = _run("spark", "/opt/spark/connector-jars", options=["--entrypoint=ls"]).split()
    prefixes = ["spark-sql-kafka-0-10_", "spark-token-provider-kafka-0-10_", "spark-avro_"]
    prefixes += ["kafka-clients-", "commons-pool2-"]
    assert len(listing) == 5
    assert all(any(jar.startswith(prefix) for jar in listing) for prefix in prefixes), listing
    # ... and on pyspark's classpath, which driver and executor pods use (their SPARK_CONF_DIR
    # is Spark's generated one): links that resolve.
    on_classpath = _run(
        "spark",
        "-c",
        "import os, pyspark; jars = os.path.join(pyspark.__path__[0], 'jars'); "
        "print(' '.join(n for n in os.listdir(jars) if os.path.islink(os.path.join(jars, n)) "
        "and os.path.isfile(os.path.join(jars, n))))",
        options=python,
    ).split()
    assert sorted(on_classpath) == sorted(listing)


def _hdfs_conf(conf: Path, ports: list[int]) -> None:
    rpc, http, data, data_http, ipc = ports
    conf.mkdir(mode=0o755)
    core = {"fs.defaultFS": f"hdfs://127.0.0.1:{rpc}", "hadoop.http.staticuser.user": "root"}
    hdfs_site = {
        "dfs.namenode.name.dir": "/data/name",
        "dfs.datanode.data.dir": "/data/data",
        "dfs.replication": "1",
        "dfs.permissions.enabled": "false",
        "dfs.namenode.rpc-address": f"127.0.0.1:{rpc}",
        "dfs.namenode.http-address": f"127.0.0.1:{http}",
        "dfs.datanode.address": f"127.0.0.1:{data}",
        "dfs.datanode.http.address": f"127.0.0.1:{data_http}",
        "dfs.datanode.ipc.address": f"127.0.0.1:{ipc}",
        "dfs.datanode.hostname": "127.0.0.1",
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.namenode.safemode.extension": "0",
        "dfs.heartbeat.interval": "1",
    }
    (conf / "core-site.xml").write_text(site_xml(core))
    (conf / "hdfs-site.xml").write_text(site_xml(hdfs_site))
    for path in conf.iterdir():
        path.chmod(0o644)


def test_hadoop_image_serves_webhdfs_and_keeps_its_namespace_across_restarts(
    built: dict[str, tuple[float, int]], shared_dir: Path
) -> None:
    ports = _free_ports(5)
    _hdfs_conf(shared_dir / "conf", ports)
    (shared_dir / "data").mkdir(mode=0o777)
    (shared_dir / "data").chmod(0o777)
    options = [
        f"--volume={shared_dir / 'conf'}:/etc/hadoop:ro",
        f"--volume={shared_dir / 'data'}:/data",
    ]
    webhdfs = f"http://127.0.0.1:{ports[1]}"

    def live_datanodes() -> int:
        url = f"{webhdfs}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
        with urllib.request.urlopen(url, timeout=3) as response:
            (bean,) = json.loads(response.read())["beans"]
        return int(bean["NumLiveDataNodes"]) if bean["FSState"] == "Operational" else 0

    client = InsecureClient(webhdfs, user="root")
    with _daemon("hadoop", "datanode", options=options):
        with _daemon("hadoop", "namenode", options=options) as logs:
            _wait(lambda: live_datanodes() == 1, "a live DataNode", logs, timeout=120)
            client.write("/smoke/hello.txt", data=b"written through WebHDFS", overwrite=True)
            assert "formatting the empty name directory" in logs()
        with _daemon("hadoop", "namenode", options=options) as logs:

            def readable() -> bool:
                # The DataNode's first call may still go to the stopped NameNode's connection.
                try:
                    with client.read("/smoke/hello.txt") as reader:
                        return bool(reader.read() == b"written through WebHDFS")
                except HdfsError:
                    return False

            _wait(readable, "the file written before the restart", logs, timeout=120)
            assert "holds a formatted namespace" in logs()
            assert "formatting" not in logs()


@pytest.fixture
def metastore_database(testbed: TestbedSession) -> Iterator[str]:
    """A fresh database in the test bed's PostgreSQL, owned by the metastore's user."""
    testbed.ensure("postgres")
    server = postgres.Postgres()
    name = f"metastore_image_{uuid.uuid4().hex[:10]}"
    server.query(f"CREATE DATABASE {name} OWNER {postgres.METASTORE_USER}")
    yield name
    server.query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_hive_metastore_image_creates_its_schema_then_serves_thrift(
    built: dict[str, tuple[float, int]], metastore_database: str, shared_dir: Path
) -> None:
    (port,) = _free_ports(1)
    site = hive.metastore_site() | {
        "javax.jdo.option.ConnectionURL": (
            f"jdbc:postgresql://{postgres.HOST}:{postgres.PORT}/{metastore_database}"
        ),
        "metastore.thrift.uris": f"thrift://127.0.0.1:{port}",
        "metastore.thrift.port": str(port),
        "metastore.warehouse.dir": "file:///tmp/warehouse",
        "fs.defaultFS": "file:///",
    }
    (shared_dir / "metastore-site.xml").write_text(site_xml(site))
    (shared_dir / "metastore-site.xml").chmod(0o644)
    options = [f"--volume={shared_dir}:/etc/hive:ro", f"--env=METASTORE_PORT={port}"]
    with _daemon("hive-metastore", "start", options=options) as logs:
        _wait(
            lambda: "default" in thrift_probe.get_all_databases("127.0.0.1", port),
            "get_all_databases",
            logs,
            timeout=180,
        )
        assert "no schema found; creating it" in logs()
    version = postgres.Postgres().query(
        'SELECT "SCHEMA_VERSION" FROM "VERSION"', database=metastore_database
    )
    assert version == "3.1.0"
