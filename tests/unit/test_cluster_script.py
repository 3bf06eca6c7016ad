"""scripts/cluster: arguments, the plain message when kind is missing, and the exact commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster"


def cluster(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def commands(output: str) -> list[str]:
    return [line.strip()[2:] for line in output.splitlines() if line.strip().startswith("$ ")]


def test_unknown_action_and_both_providers_are_refused() -> None:
    assert cluster("sideways").returncode == 2
    both = cluster("up", "--kind", "--minikube")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_says_plainly_that_kind_is_not_installed(tmp_path: Path) -> None:
    for tool in ("kubectl", "helm", "podman"):  # everything but kind
        fake = tmp_path / tool
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    result = cluster("up", "--kind", path=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "kind is not installed; install it first: "
        "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
    ]
    assert result.stdout == ""


def test_minikube_missing_names_minikube(tmp_path: Path) -> None:
    result = cluster("down", "--minikube", path=str(tmp_path))
    assert result.returncode == 2
    assert "minikube is not installed" in result.stderr
    assert "kubectl is not installed" in result.stderr


def test_dry_run_up_on_kind_prints_the_exact_commands_in_order() -> None:
    result = cluster("up", "--kind", "--dry-run")
    assert result.returncode == 0, result.stderr
    steps = commands(result.stdout)
    platform_chart = str(ROOT / "charts" / "cryptopipe-platform")
    assert steps[0] == "kind get clusters"
    assert steps[1] == "kind create cluster --name cryptopipe --config - <<EOF"
    assert 'node-labels: "ingress-ready=true"' in result.stdout
    assert steps[2] == f"{ROOT}/scripts/images build"
    # Our images live in the images' own podman store: `scripts/images save` reads it.
    assert steps[3].startswith(f"{ROOT}/scripts/images save /")
    assert steps[3].endswith(" operator producer spark trainer dashboard hadoop hive-metastore")
    loads = [s for s in steps if s.startswith("kind load image-archive")]
    assert len(loads) == 7 and all(s.endswith("--name cryptopipe") for s in loads)
    assert any("hive-metastore.tar" in s for s in loads)
    expected_in_order = [
        "kubectl --context=kind-cryptopipe apply -f https://raw.githubusercontent.com/kubernetes/"
        "ingress-nginx/controller-v1.13.3/deploy/static/provider/kind/deploy.yaml",
        "helm --kube-context=kind-cryptopipe repo add --force-update strimzi "
        "https://strimzi.io/charts/",
        "helm --kube-context=kind-cryptopipe upgrade --install strimzi "
        "strimzi/strimzi-kafka-operator --version 1.2.0 -n strimzi --create-namespace "
        "--set 'watchNamespaces={cryptopipe}' "
        "--set 'extraEnvs[0].name=STRIMZI_POD_SECURITY_PROVIDER_CLASS' "
        "--set 'extraEnvs[0].value=restricted' --wait --timeout=10m",
        "helm --kube-context=kind-cryptopipe upgrade --install spark-operator "
        "spark-operator/spark-operator --version 2.5.0 -n spark-operator --create-namespace "
        "--set 'spark.jobNamespaces={cryptopipe}' --set webhook.enable=true --wait --timeout=10m",
        f"helm --kube-context=kind-cryptopipe upgrade --install cryptopipe-platform "
        f"{platform_chart} -n cryptopipe --create-namespace -f "
        f"{platform_chart}/values-kind.yaml --wait --timeout=15m",
        "kubectl --context=kind-cryptopipe -n cryptopipe wait kafka/cryptopipe "
        "--for=condition=Ready --timeout=15m",
    ]
    positions = [steps.index(step) for step in expected_in_order]
    assert positions == sorted(positions)
    last = steps[-1]
    assert last.startswith(
        "helm --kube-context=kind-cryptopipe upgrade --install cryptopipe-operator"
    )
    assert "operator-values.yaml" in last
    assert "Ready. Next:" in result.stdout and "examples/btcusdt.yaml" in result.stdout
    # Both namespaces exist under Pod Security's restricted profile before anything runs there.
    restricted = "".join(
        f"\n    pod-security.kubernetes.io/{mode}: restricted"
        for mode in ("enforce", "audit", "warn")
    )
    for namespace, installed_by in (
        ("cryptopipe", "upgrade --install cryptopipe-platform"),
        ("spark-operator", "upgrade --install spark-operator"),
    ):
        manifest = f"  name: {namespace}\n  labels:{restricted}"
        assert manifest in result.stdout
        assert result.stdout.index(manifest) < result.stdout.index(installed_by)


def test_dry_run_on_minikube_loads_with_minikube_and_enables_its_ingress() -> None:
    result = cluster("up", "--minikube", "--dry-run", "--name", "lab", "--namespace", "crypto")
    steps = commands(result.stdout)
    assert steps[0] == "minikube start -p lab --cpus=4 --memory=8g --disk-size=40g"
    assert any(s.startswith("minikube -p lab image load ") for s in steps)
    assert "minikube -p lab addons enable ingress" in steps
    assert not any(s.startswith("kind ") for s in steps)
    assert any(s.endswith("values-minikube.yaml --wait --timeout=15m") for s in steps)
    assert any("'spark.jobNamespaces={crypto}'" in s for s in steps)


def test_dry_run_down_removes_every_release() -> None:
    steps = commands(cluster("down", "--dry-run", "--delete-cluster").stdout)
    uninstalled = [s.split()[3] for s in steps if " uninstall " in s]
    assert uninstalled == [
        "cryptopipe-operator",
        "cryptopipe-platform",
        "spark-operator",
        "strimzi",
    ]
    assert steps[-1] == "kind delete cluster --name cryptopipe"


def test_offline_up_needs_a_kafka_and_refuses_minikube() -> None:
    missing = cluster("up", "--kind", "--offline", "--dry-run")
    assert missing.returncode == 2
    assert "--offline needs --kafka-bootstrap" in missing.stderr
    minikube = cluster("up", "--minikube", "--offline", "--dry-run", "--kafka-bootstrap", "k:9092")
    assert minikube.returncode == 2
    assert "--offline works with kind only" in minikube.stderr


def test_offline_up_passes_an_external_schema_registry_to_the_platform() -> None:
    url = "http://10.0.0.5:18081/apis/ccompat/v7"
    result = cluster(
        "up", "--kind", "--offline", "--dry-run",
        "--kafka-bootstrap", "10.0.0.5:9094", "--schema-registry-url", url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (platform,) = [
        s for s in commands(result.stdout) if "upgrade --install cryptopipe-platform" in s
    ]
    assert "--set schemaRegistry.provider=external" in platform
    assert f"--set schemaRegistry.external.url={url}" in platform


def test_dry_run_offline_up_installs_stand_ins_and_an_external_kafka() -> None:
    result = cluster("up", "--kind", "--offline", "--dry-run", "--kafka-bootstrap", "10.0.0.5:9094")
    assert result.returncode == 0, result.stderr
    steps = commands(result.stdout)
    assert steps[0] == f"{ROOT}/scripts/kind-offline create --name cryptopipe"
    assert any("-m cryptopipe_testbed.cluster_standins " in s for s in steps)
    loads = [s for s in steps if " kind load image-archive " in s]
    assert len(loads) == 7 and all(s.startswith(f"{ROOT}/scripts/kind-offline kind") for s in loads)
    assert not any("ingress-nginx" in s or "strimzi" in s for s in steps)
    (spark_operator,) = [s for s in steps if " spark-operator " in s and " upgrade " in s]
    assert "--set image.pullPolicy=Never" in spark_operator
    assert "--set webhook.enable=true" in spark_operator
    (platform,) = [s for s in steps if "upgrade --install cryptopipe-platform" in s]
    assert "--set kafka.provider=external" in platform
    assert "--set kafka.external.bootstrapServers=10.0.0.5:9094" in platform
    assert "--set postgres.image.pullPolicy=Never" in platform
    assert "--set schemaRegistry.provider=none" in platform  # no Apicurio image offline
    assert not any("wait kafka/cryptopipe" in s for s in steps)
    assert all("--kubeconfig=" in s for s in steps if s.split()[0].endswith(("kubectl", "helm")))
    assert "export KUBECONFIG=" in result.stdout
    # The CRDs server-side before the operator chart: helm never upgrades a chart's crds/.
    (crd,) = [s for s in steps if "--server-side" in s]
    assert crd.endswith("charts/cryptopipe-operator/crds/cryptopipelines.yaml")
    operator = next(i for i, s in enumerate(steps) if "upgrade --install cryptopipe-operator" in s)
    assert steps.index(crd) < operator


def test_an_authenticating_kafka_gets_the_admins_secret_first_and_managed_users(
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "admin"
    credentials.write_text("username=platform-admin\npassword=very-secret\n")
    result = cluster(
        "up", "--kind", "--offline", "--dry-run", "--kafka-bootstrap", "10.0.0.5:9096",
        "--kafka-sasl", "SCRAM-SHA-512", "--kafka-admin-credentials", str(credentials),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "very-secret" not in result.stdout  # the dry run shows the Secret without values
    out = result.stdout
    assert out.index('"kind": "Secret"') < out.index("upgrade --install cryptopipe-platform")
    steps = commands(out)
    platform = next(i for i, s in enumerate(steps) if "upgrade --install cryptopipe-platform" in s)
    for flag in (
        "kafka.external.securityProtocol=SASL_PLAINTEXT",
        "kafka.external.saslMechanism=SCRAM-SHA-512",
        "kafka.external.manageUsers=true",
        "kafka.external.adminSecret=kafka-admin",
    ):
        assert f"--set {flag}" in steps[platform], flag


def test_kafka_sasl_needs_its_admin_and_an_external_kafka(tmp_path: Path) -> None:
    alone = cluster("up", "--kind", "--offline", "--dry-run", "--kafka-bootstrap", "k:9096",
                    "--kafka-sasl", "SCRAM-SHA-512")  # fmt: skip
    assert alone.returncode == 2 and "go together" in alone.stderr
    credentials = tmp_path / "admin"
    credentials.write_text("user=x\n")
    broken = cluster(
        "up", "--kind", "--offline", "--dry-run", "--kafka-bootstrap", "k:9096",
        "--kafka-sasl", "SCRAM-SHA-512", "--kafka-admin-credentials", str(credentials),
    )  # fmt: skip
    assert broken.returncode != 0 and "expected username= or password=" in broken.stderr
