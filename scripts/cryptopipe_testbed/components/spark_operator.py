"""The Kubeflow spark-operator's controller, built from its Go module, on this machine.

It runs as a host process, not as a pod: its only job is to turn SparkApplications into
`spark-submit` runs, and a host process needs neither an operator image (no registry can give
us upstream's) nor a Spark distribution inside one. The controller talks to the API server with
the test bed's admin kubeconfig. The `spark-submit` it runs (from the workspace's pyspark, as
SPARK_HOME) creates the driver pod as the ServiceAccount `spark-operator/spark-submit` (a token
kubeconfig: Spark's fabric8 client cannot read the test bed's EC client keys); the driver pod
(our spark image) then creates its executors with its own ServiceAccount.

- Built with `go build ./cmd/operator` in a writable copy of the module (`go install` fails on
  its replace lines), stamped with its version, cached under
  `~/.cache/cryptopipe/spark-operator-<version>/bin`.
- SPARK_HOME: pyspark's wheel already carries `spark-kubernetes_2.13` and the fabric8 client
  (kubernetes-client, its vertx HTTP client and models) at exactly its Spark version, so the
  pyspark package folder of the workspace's virtual environment (`scripts/setup` makes it) is
  a complete SPARK_HOME for Kubernetes submission; nothing more comes from Maven Central.
- The mutating webhook is not run (it is a separate command, `spark-operator webhook`): a
  SparkApplication must express what the webhook would patch into its pods (volumes other than
  `spark-local-dir-*`, security contexts, per-role node selectors and tolerations) in
  `driver.template` and `executor.template`, which the controller hands to spark-submit as pod
  template files (under /tmp/spark/<submission id>).
- Leader election off (one controller). It manages SparkApplications only in namespaces
  labelled `cryptopipe.io/spark-operator=enabled`, so the tests that play the spark-operator's
  part by patching a SparkApplication's status themselves keep their namespaces to themselves.
- The SparkApplication, ScheduledSparkApplication and SparkConnect CRDs of the same module are
  applied before it starts (its caches watch all three).
- `scripts/testbed up` with no arguments starts it, after kube and node.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cryptopipe_testbed import kube_build, paths, process, upstream_crds, versions
from cryptopipe_testbed.components import kube
from cryptopipe_testbed.components.base import Component, Health

DAEMON = "spark-operator"
HOST = "127.0.0.1"
HEALTH_PORT = 20281
METRICS_PORT = 20282
SUBMITTER_NAMESPACE = "spark-operator"
SUBMITTER = "spark-submit"
# Renewed at every start; a test bed runs for hours, not for a month.
TOKEN_DURATION = "720h"  # noqa: S105 (a duration, not a secret)
NAMESPACE_LABEL = ("cryptopipe.io/spark-operator", "enabled")
GROUP = "sparkoperator.k8s.io"
CRD_FILES = (
    "sparkoperator.k8s.io_sparkapplications.yaml",
    "sparkoperator.k8s.io_scheduledsparkapplications.yaml",
    "sparkoperator.k8s.io_sparkconnects.yaml",
)
# The fabric8 client and the Kubernetes resource manager that spark-submit needs.
KUBERNETES_JARS = (
    f"spark-kubernetes_{versions.SCALA_BINARY}-{versions.SPARK}.jar",
    "kubernetes-client-",
    "kubernetes-httpclient-",
)


def binary() -> Path:
    return paths.component_cache("spark-operator", versions.SPARK_OPERATOR) / "bin" / DAEMON


def module_dir() -> Path:
    return kube_build.module_dir(upstream_crds.SPARK_OPERATOR_MODULE, versions.SPARK_OPERATOR)


def _build(dest: Path, log: Path) -> None:
    module = upstream_crds.SPARK_OPERATOR_MODULE
    kube_build._go(["mod", "download", f"{module}@{versions.SPARK_OPERATOR}"], log=log)
    source = dest / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(module_dir(), source)
    for folder in (source, *(path for path in source.rglob("*") if path.is_dir())):
        folder.chmod(0o755)  # the module cache is read-only
    flags = kube_build._ldflags(
        *kube_build._version_flags("k8s.io/component-base/version", versions.SPARK_OPERATOR)
    )
    kube_build._go(
        [
            "build",
            "-mod=mod",
            "-trimpath",
            "-ldflags",
            flags,
            "-o",
            str(binary()),
            "./cmd/operator",
        ],
        log=log,
        cwd=source,
    )
    shutil.rmtree(source)


def virtual_env() -> Path:
    """The workspace's environment, where `uv sync` (scripts/setup) installs pyspark."""
    return Path(os.environ.get("UV_PROJECT_ENVIRONMENT", paths.REPO_ROOT / ".venv"))


def spark_home(venv: Path | None = None) -> Path | None:
    """pyspark's package folder in that environment, or None before `scripts/setup`."""
    found = sorted((venv or virtual_env()).glob("lib/python3*/site-packages/pyspark"))
    return found[-1] if found else None


def missing_kubernetes_jars(home: Path) -> list[str]:
    names = [jar.name for jar in (home / "jars").glob("*.jar")]
    return [prefix for prefix in KUBERNETES_JARS if not any(n.startswith(prefix) for n in names)]


def controller_argv() -> list[str]:
    """`spark-operator controller start` with the flags of cmd/operator/controller/start.go."""
    return [
        str(binary()),
        "controller",
        "start",
        f"--kubeconfig={kube.admin_kubeconfig()}",
        f"--namespace-selector={'='.join(NAMESPACE_LABEL)}",
        "--leader-election=false",
        f"--health-probe-bind-address={HOST}:{HEALTH_PORT}",
        "--enable-metrics=true",
        f"--metrics-bind-address={HOST}:{METRICS_PORT}",
        "--controller-threads=4",
        # The test bed has no ingress controller and the driver's UI stays inside the cluster.
        "--enable-ui-service=false",
        "--zap-log-level=info",
    ]


def submitter_objects() -> list[dict[str, Any]]:
    """The identity spark-submit creates drivers with: what a driver's own RBAC allows too
    (pods, their Services and ConfigMaps, claims), in any namespace."""
    name = "cryptopipe-testbed:spark-submit"
    subject = {"kind": "ServiceAccount", "name": SUBMITTER, "namespace": SUBMITTER_NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SUBMITTER_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SUBMITTER, "namespace": SUBMITTER_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject],
        },
    ]


def submitter_kubeconfig() -> Path:
    return paths.component_run("spark-operator") / "spark-submit.kubeconfig"


def controller_env(home: Path, kubeconfig: Path) -> dict[str, str]:
    """spark-submit runs on this machine and reaches the API server on loopback (the controller
    builds the master URL from these two variables). It authenticates with a ServiceAccount
    token: the fabric8 client cannot read the test bed's EC client keys."""
    return {
        "SPARK_HOME": str(home),
        "PATH": f"{home / 'bin'}:{os.environ.get('PATH', '')}",
        "KUBERNETES_SERVICE_HOST": kube.HOST,
        "KUBERNETES_SERVICE_PORT": str(kube.APISERVER_PORT),
        "KUBECONFIG": str(kubeconfig),
        "SPARK_LOCAL_IP": HOST,
    }


def _kubectl(*args: str, stdin: str | None = None) -> None:
    result = kube.kubectl(*args, stdin=stdin)
    if result.returncode != 0:
        raise process.StartError(f"kubectl {' '.join(args[:2])} failed: {result.stderr}")


def _ready() -> bool:
    return process.http_get(f"http://{HOST}:{HEALTH_PORT}/readyz") is not None


class SparkOperator(Component):
    name = "sparkop"
    version = versions.SPARK_OPERATOR
    requires = ("kube", "node")

    def install(self) -> None:
        kube_build._once("spark-operator", self.version, _build)

    def start(self) -> None:
        self.install()
        home = spark_home()
        if home is None:
            raise process.StartError(f"no pyspark in {virtual_env()}: run scripts/setup first")
        missing = missing_kubernetes_jars(home)
        if missing:
            raise process.StartError(f"{home}/jars lacks {', '.join(missing)}")
        self._apply_crds()
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": submitter_objects()})
        _kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=document)
        try:
            kubeconfig = kube.service_account_kubeconfig(
                SUBMITTER_NAMESPACE, SUBMITTER, submitter_kubeconfig(), TOKEN_DURATION
            )
        except RuntimeError as error:
            raise process.StartError(str(error)) from error
        process.start(process.Daemon(DAEMON, controller_argv(), controller_env(home, kubeconfig)))
        process.wait_until(_ready, what="spark-operator /readyz", logs=[DAEMON], timeout=60)

    def _apply_crds(self) -> None:
        bases = module_dir() / "config" / "crd" / "bases"
        for name in CRD_FILES:
            _kubectl("apply", "--server-side", "--force-conflicts", "-f", str(bases / name))
        crds = [f"crd/{name.split('_', 1)[1].removesuffix('.yaml')}.{GROUP}" for name in CRD_FILES]
        kube.wait_established(crds)

    def stop(self) -> None:
        process.stop(DAEMON)

    def health(self) -> Health:
        if process.running_pid(DAEMON) is None:
            return Health(False, "not running")
        if not _ready():
            return Health(False, f"/readyz on {HOST}:{HEALTH_PORT} does not answer")
        return Health(
            True,
            f"controller ready, SparkApplications in namespaces {'='.join(NAMESPACE_LABEL)}; "
            f"SPARK_HOME {spark_home()}",
        )

    def address(self) -> str:
        return f"http://{HOST}:{HEALTH_PORT}/readyz"

    def env(self) -> dict[str, str]:
        return {
            "CRYPTOPIPE_SPARK_OPERATOR_VERSION": self.version,
            "CRYPTOPIPE_SPARK_OPERATOR_NAMESPACE_LABEL": "=".join(NAMESPACE_LABEL),
            "CRYPTOPIPE_SPARK_OPERATOR_METRICS": f"http://{HOST}:{METRICS_PORT}/metrics",
        }
