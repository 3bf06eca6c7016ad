"""The platform chart and our images agree: the HDFS and Hive metastore pods, and every
`helm test` hook pod, as `helm template` renders them, run with podman exactly as the kubelet
would run them (command, args, env with the Secret's values, the ConfigMaps' files at their
mount paths, writable volumes through the pod's user and fsGroup, dropped capabilities) on the
host network against the test bed. Ports and the database come from chart values; the Service
names resolve to 127.0.0.1 as cluster DNS would resolve them to the pods."""

from __future__ import annotations

import base64
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hdfs import InsecureClient

from cryptopipe_operator import children
from cryptopipe_operator.children.common import Pipeline
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import spec_from_document
from cryptopipe_testbed import thrift_probe
from cryptopipe_testbed.components import images, postgres
from cryptopipe_testbed.components.kube import Kubernetes, helm_path
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "cryptopipe-platform"
PREFIX = "cryptopipe"
SERVICES = (f"{PREFIX}-hdfs-namenode", f"{PREFIX}-hive-metastore")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _podman(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **images.podman_env()},
        check=False,
    )


@dataclass(frozen=True)
class Rendered:
    docs: list[dict[str, Any]]
    values: dict[str, Any]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        (doc,) = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return doc

    def pod_spec(self, kind: str, name: str) -> dict[str, Any]:
        doc = self.one(kind, name)
        spec: dict[str, Any] = doc["spec"] if kind == "Pod" else doc["spec"]["template"]["spec"]
        return spec


def pod_run_options(
    rendered: Rendered, pod: dict[str, Any], container: dict[str, Any], volumes_dir: Path
) -> list[str]:
    """`podman run` options and arguments that run one container of a rendered pod as the
    kubelet would, image and command included."""
    security = pod.get("securityContext", {})
    options = ["--network=host", *(f"--add-host={name}:127.0.0.1" for name in SERVICES)]
    options.append(f"--user={security['runAsUser']}:{security['runAsGroup']}")
    if "fsGroup" in security:
        options.append(f"--group-add={security['fsGroup']}")
    container_security = container.get("securityContext", {})
    if "ALL" in container_security.get("capabilities", {}).get("drop", []):
        options.append("--cap-drop=all")
    if container_security.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    for variable in container.get("env", []):
        options.append(f"--env={variable['name']}={_env_value(rendered, variable)}")
    sources = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        host = _volume(rendered, sources.get(mount["name"]), volumes_dir / mount["name"], security)
        read_only = ":ro" if mount.get("readOnly") else ""
        options.append(f"--volume={host}:{mount['mountPath']}{read_only}")
    if "command" in container:
        options.append(f"--entrypoint={json.dumps(container['command'])}")
    return [*options, container["image"], *container.get("args", [])]


def _env_value(rendered: Rendered, variable: dict[str, Any]) -> str:
    if "value" in variable:
        return str(variable["value"])
    ref = variable["valueFrom"]["secretKeyRef"]
    secret = rendered.one("Secret", ref["name"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def _volume(
    rendered: Rendered, source: dict[str, Any] | None, host: Path, security: dict[str, Any]
) -> Path:
    """A ConfigMap's files, or (emptyDir, claim) a folder made writable to the pod's fsGroup
    the way the kubelet does it: group-owned, group-writable, setgid."""
    if host.exists():
        return host
    host.mkdir(parents=True)
    if source is not None and "configMap" in source:
        data = rendered.one("ConfigMap", source["configMap"]["name"])["data"]
        for key, text in data.items():
            (host / key).write_text(text)
            (host / key).chmod(0o644)
        host.chmod(0o755)
        return host
    os.chown(host, 0, int(security.get("fsGroup", security["runAsGroup"])))
    host.chmod(0o2775)
    return host


@contextlib.contextmanager
def running(
    rendered: Rendered, kind: str, name: str, volumes_dir: Path
) -> Iterator[tuple[str, Callable[[], str]]]:
    """The first container of a rendered workload, in the background: (container, its log)."""
    pod = rendered.pod_spec(kind, name)
    container = f"cryptopipe-chart-{name}-{uuid.uuid4().hex[:8]}"
    options = pod_run_options(rendered, pod, pod["containers"][0], volumes_dir / name)
    started = _podman("run", "-d", f"--name={container}", *options)
    assert started.returncode == 0, started.stderr

    def logs() -> str:
        result = _podman("logs", container)
        return result.stdout + result.stderr

    try:
        yield container, logs
    finally:
        _podman("rm", "--force", "--time=5", container)


def _wait(check: Callable[[], bool], what: str, logs: Callable[[], str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(1)
    pytest.fail(f"{what} not within {timeout:.0f}s; container log:\n{logs()[-6000:]}")


@dataclass(frozen=True)
class Platform:
    rendered: Rendered
    database: str
    volumes_dir: Path
    namenode: tuple[str, Callable[[], str]]
    metastore: tuple[str, Callable[[], str]]


def _values(database: str) -> dict[str, Any]:
    rpc, http, data, data_http, ipc, thrift = _free_ports(6)
    loopback = {
        # Host networking: bind to loopback only (the chart's 0.0.0.0 is for a pod's own address).
        "dfs.namenode.rpc-bind-host": "127.0.0.1",
        "dfs.namenode.http-bind-host": "127.0.0.1",
        "dfs.namenode.servicerpc-bind-host": "127.0.0.1",
        "dfs.datanode.address": f"127.0.0.1:{data}",
        "dfs.datanode.http.address": f"127.0.0.1:{data_http}",
        "dfs.datanode.ipc.address": f"127.0.0.1:{ipc}",
        "dfs.heartbeat.interval": "1",
    }
    return {
        "kafka": {"provider": "external", "external": {"bootstrapServers": "127.0.0.1:19092"}},
        "hdfs": {
            "hdfsSite": loopback,
            "namenode": {"ports": {"rpc": rpc, "http": http}},
            "datanode": {"ports": {"data": data, "http": data_http, "ipc": ipc}},
        },
        "hiveMetastore": {
            "port": thrift,
            "database": {
                "name": database,
                "username": postgres.METASTORE_USER,
                "external": {"enabled": True, "host": postgres.HOST, "port": postgres.PORT},
            },
        },
    }


def render(values: dict[str, Any], work: Path) -> Rendered:
    Kubernetes().install()  # the cached helm build; starts nothing
    values_file = work / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [str(helm_path()), "template", "rel", str(CHART), "--namespace=team", f"-f={values_file}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Rendered([doc for doc in yaml.safe_load_all(result.stdout) if doc], values)


@pytest.fixture(scope="module")
def platform(testbed: TestbedSession) -> Iterator[Platform]:
    testbed.ensure("postgres", "kafka")
    images.build(["hadoop", "hive-metastore", "producer", "trainer"])
    server = postgres.Postgres()
    database = f"metastore_chart_{uuid.uuid4().hex[:10]}"
    server.query(f"CREATE DATABASE {database} OWNER {postgres.METASTORE_USER}")
    work = Path(tempfile.mkdtemp(prefix="cryptopipe-chart-images-"))
    try:
        rendered = render(_values(database), work)
        volumes = work / "volumes"
        with (
            running(rendered, "StatefulSet", f"{PREFIX}-hdfs-datanode", volumes),
            running(rendered, "StatefulSet", f"{PREFIX}-hdfs-namenode", volumes) as namenode,
            running(rendered, "Deployment", f"{PREFIX}-hive-metastore", volumes) as metastore,
        ):
            yield Platform(rendered, database, volumes, namenode, metastore)
    finally:
        server.query(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)


def _namenode_ready(platform: Platform) -> bool:
    """The chart's own readiness probe (bash in the hadoop image), run in the container."""
    pod = platform.rendered.pod_spec("StatefulSet", f"{PREFIX}-hdfs-namenode")
    probe = pod["containers"][0]["readinessProbe"]["exec"]["command"]
    return _podman("exec", platform.namenode[0], *probe, timeout=30).returncode == 0


def test_hdfs_pods_format_once_serve_webhdfs_and_pass_their_readiness_probe(
    platform: Platform,
) -> None:
    _, logs = platform.namenode
    _wait(lambda: _namenode_ready(platform), "the NameNode's readiness probe", logs, timeout=150)
    assert "formatting the empty name directory" in logs()
    # Formatted inside the claim, by the pod's user, under the folder the chart configures.
    version = platform.volumes_dir / f"{PREFIX}-hdfs-namenode" / "name" / "nn" / "current"
    assert (version / "VERSION").is_file()
    assert (version / "VERSION").stat().st_uid == 10001
    port = platform.rendered.values["hdfs"]["namenode"]["ports"]["http"]
    # NameNode-only calls from here: data calls redirect to a DataNode by the Service name, which
    # only resolves inside the containers (the webhdfs hook pod writes and reads a file).
    client = InsecureClient(f"http://127.0.0.1:{port}", user="chart-test")
    folder = f"/chart-test-{uuid.uuid4().hex[:8]}"
    client.makedirs(folder)
    assert client.status(folder)["type"] == "DIRECTORY"
    jmx = f"http://127.0.0.1:{port}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    with urllib.request.urlopen(jmx, timeout=5) as response:
        (bean,) = json.loads(response.read())["beans"]
    assert bean["NumLiveDataNodes"] == 1


def test_metastore_pod_creates_its_schema_then_answers_thrift(platform: Platform) -> None:
    _, logs = platform.metastore
    port = platform.rendered.values["hiveMetastore"]["port"]
    _wait(
        lambda: "default" in thrift_probe.get_all_databases("127.0.0.1", port),
        "get_all_databases",
        logs,
        timeout=180,
    )
    assert "no schema found; creating it" in logs()
    version = postgres.Postgres().query(
        'SELECT "SCHEMA_VERSION" FROM "VERSION"', database=platform.database
    )
    assert version == "3.1.0"


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        ("test-kafka", "kafka round trip on helm-test-"),
        ("test-webhdfs", "webhdfs write and read of /tmp/helm-test-"),
        ("test-metastore", "metastore databases: default"),
    ],
)
def test_helm_test_hook_pod_passes(platform: Platform, hook: str, expected: str) -> None:
    rendered = platform.rendered
    name = f"{PREFIX}-{hook}"
    assert rendered.one("Pod", name)["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Hooks run once the services are ready, as `helm test` after `helm install --wait`.
    http = rendered.values["hdfs"]["namenode"]["ports"]["http"]
    _wait(lambda: _namenode_ready(platform), "HDFS", platform.namenode[1], timeout=150)
    thrift = rendered.values["hiveMetastore"]["port"]
    _wait(
        lambda: "default" in thrift_probe.get_all_databases("127.0.0.1", thrift),
        "the metastore",
        platform.metastore[1],
        timeout=180,
    )
    pod = rendered.pod_spec("Pod", name)
    (container,) = pod["containers"]
    options = pod_run_options(rendered, pod, container, platform.volumes_dir / name)
    result = _podman("run", "--rm", *options, timeout=150)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{hook} exited {result.returncode} (WebHDFS {http}):\n{output}"
    assert expected in output, output


def _operator_children() -> list[dict[str, Any]]:
    examples = Path(__file__).resolve().parents[2] / "examples"
    document = yaml.safe_load((examples / "btcusdt.yaml").read_text())
    pipeline = Pipeline("btc", "team", spec_from_document(document))
    return children.desired(pipeline, PlatformConfig())


_CHECK = """
import shutil, sys
command, path = sys.argv[1], sys.argv[2]
assert shutil.which(command), f"{command} is not on PATH"
assert not path or open(path).read(), f"{path} is missing or empty"
print("found", command, path)
"""


@pytest.mark.parametrize(
    "component", ["producer", "trainer", "predictor", "dashboard", "aggregator"]
)
def test_operator_children_commands_and_files_exist_in_their_images(component: str) -> None:
    """What each operator-built container starts (its command, or the SparkApplication's
    spark-submit and mainApplicationFile; the dashboard's app) is in the image it names."""
    objs = _operator_children()
    if component == "aggregator":
        (app,) = [o for o in objs if o["kind"] == "SparkApplication"]
        image, command = app["spec"]["image"], "spark-submit"
        path = app["spec"]["mainApplicationFile"].removeprefix("local://")
    else:
        (container,) = [
            c
            for o in objs
            if o["kind"] in {"Deployment", "Job"}
            for c in o["spec"]["template"]["spec"]["containers"]
            if c["name"] == component
        ]
        image, command = container["image"], container["command"][0]
        path = container["args"][1] if component == "dashboard" else ""
    name = image.rsplit("/", 1)[-1].split(":")[0]
    images.build([name])
    result = _podman(
        "run", "--rm", "--entrypoint=python", images.reference(name), "-c", _CHECK, command, path
    )
    assert result.returncode == 0, result.stdout + result.stderr
