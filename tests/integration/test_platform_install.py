"""The platform and operator charts on the test bed's real API server, with the upstream CRDs.

`helm install`, `helm upgrade` with changed values and `helm uninstall` of both charts: the
API server validates every object (the Strimzi CRDs' CEL rules included), the generated
database password survives the upgrade, the operator chart takes the platform's settings from
the platform's ConfigMap, and nothing is left behind. Pods land on kwok's fake node (they are
not run for real here).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from node_support import wait_for

from cryptopipe_testbed import upstream_crds
from cryptopipe_testbed.components.kube import FAKE_NODE_LABEL, FAKE_NODE_TAINT, wait_established

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "charts" / "cryptopipe-platform"
OPERATOR = ROOT / "charts" / "cryptopipe-operator"
SCHEDULING = {
    "nodeSelector": {FAKE_NODE_LABEL[0]: FAKE_NODE_LABEL[1]},
    "tolerations": [
        {
            "key": FAKE_NODE_TAINT[0],
            "operator": "Equal",
            "value": FAKE_NODE_TAINT[1],
            "effect": FAKE_NODE_TAINT[2],
        }
    ],
}
NAMESPACED = (
    "statefulsets,deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,"
    "persistentvolumeclaims,kafkas.kafka.strimzi.io,kafkanodepools.kafka.strimzi.io"
)


class Cluster:
    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.helm_env = {
            **os.environ,
            "KUBECONFIG": env["KUBECONFIG"],
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def kubectl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [self.env["CRYPTOPIPE_KUBECTL"], f"--kubeconfig={self.env['KUBECONFIG']}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args[:3])}: {result.stderr}"
        return result.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str) -> str:
        result = subprocess.run(
            [self.env["CRYPTOPIPE_HELM"], *args],
            capture_output=True,
            text=True,
            env=self.helm_env,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, f"helm {' '.join(args[:2])}: {result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def cluster(testbed: Any, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    k = Cluster(testbed.ensure("kube"), tmp_path_factory.mktemp("helm"))
    for path in upstream_crds.crd_files():
        k.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    k.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(OPERATOR / "crds"))
    wait_established(
        [f"crd/{crd}.kafka.strimzi.io" for crd in ("kafkas", "kafkanodepools", "kafkatopics")]
    )
    return k


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    ns = f"cpp-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def leftovers(cluster: Cluster, ns: str, release: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={release}"
    items = cluster.get(NAMESPACED, "-n", ns, "-l", selector)["items"]
    claims = cluster.get("persistentvolumeclaims", "-n", ns)["items"]  # claims carry no labels
    cluster_wide = cluster.get("clusterroles,clusterrolebindings", "-l", selector)["items"]
    return [f"{o['kind']}/{o['metadata']['name']}" for o in items + claims + cluster_wide]


def test_install_upgrade_uninstall_on_the_api_server(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    platform_values = tmp_path / "platform.yaml"
    platform_values.write_text(
        yaml.safe_dump({"scheduling": SCHEDULING, "persistence": {"keepOnUninstall": False}})
    )
    kind_values = str(PLATFORM / "values-kind.yaml")
    cluster.helm(
        "install", "platform", str(PLATFORM), "-n", namespace,
        "-f", kind_values, "-f", str(platform_values), "--set", "persistence.storageClass=",
    )  # fmt: skip

    kafka = cluster.get("kafka", "cryptopipe", "-n", namespace)
    assert kafka["spec"]["entityOperator"]["topicOperator"]["resources"]
    pool = cluster.get("kafkanodepool", "cryptopipe-dual-role", "-n", namespace)
    assert pool["spec"]["roles"] == ["controller", "broker"]
    secret = cluster.get("secret", "cryptopipe-hive-metastore-db", "-n", namespace)
    password = base64.b64decode(secret["data"]["password"])
    assert len(password) == 32
    # The StatefulSet controller makes the claims; kwok "runs" the pods on the fake node.
    wait_for(
        "the NameNode's claim",
        lambda: cluster.get("persistentvolumeclaims", "-n", namespace)["items"],
    )

    cluster.helm(
        "upgrade", "platform", str(PLATFORM), "-n", namespace,
        "-f", kind_values, "-f", str(platform_values), "--set", "persistence.storageClass=",
        "--set", "hdfs.datanode.replicas=2", "--set", "kafka.strimzi.replicas=3",
    )  # fmt: skip
    datanodes = cluster.get("statefulset", "cryptopipe-hdfs-datanode", "-n", namespace)
    assert datanodes["spec"]["replicas"] == 2
    pool = cluster.get("kafkanodepool", "cryptopipe-dual-role", "-n", namespace)
    assert pool["spec"]["replicas"] == 3
    secret = cluster.get("secret", "cryptopipe-hive-metastore-db", "-n", namespace)
    assert base64.b64decode(secret["data"]["password"]) == password  # kept across the upgrade

    # The operator chart, configured from what the platform says about itself.
    info = cluster.get("configmap", "cryptopipe-platform", "-n", namespace)
    operator_values = tmp_path / "operator.yaml"
    operator_values.write_text(info["data"]["operator-values.yaml"])
    release = f"cpo-{uuid.uuid4().hex[:6]}"
    cluster.helm(
        "install", release, str(OPERATOR), "-n", namespace, "-f", str(operator_values),
        "--set-json", f"tolerations={json.dumps(SCHEDULING['tolerations'])}",
    )  # fmt: skip
    config = cluster.get("configmap", f"{release}-cryptopipe-operator", "-n", namespace)
    platform = yaml.safe_load(config["data"]["platform.yaml"])
    assert platform["kafka"]["mode"] == "strimzi"
    assert platform["kafka"]["clusterNamespace"] == namespace
    assert platform["storage"]["hiveMetastoreUri"] == "thrift://cryptopipe-hive-metastore:9083"
    assert platform["images"]["producer"] == "localhost/cryptopipe/producer:0.1.0"

    cluster.helm("uninstall", release, "-n", namespace, "--wait")
    cluster.helm("uninstall", "platform", "-n", namespace, "--wait")
    wait_for(
        "nothing left of either release",
        lambda: (
            not leftovers(cluster, namespace, "platform")
            and not leftovers(cluster, namespace, release)
        ),
        timeout=120,
    )


def test_external_kafka_installs_no_strimzi_resources(cluster: Cluster, namespace: str) -> None:
    cluster.helm(
        "install", "platform", str(PLATFORM), "-n", namespace,
        "--set", "kafka.provider=external",
        "--set", "kafka.external.bootstrapServers=kafka.example:9092",
        "--set", "persistence.keepOnUninstall=false",
        "--set", "hiveMetastore.database.external.enabled=true",
        "--set", "hiveMetastore.database.external.host=pg.example",
    )  # fmt: skip
    assert cluster.get("kafkas,kafkanodepools", "-n", namespace)["items"] == []
    info = cluster.get("configmap", "cryptopipe-platform", "-n", namespace)
    assert yaml.safe_load(info["data"]["operator-values.yaml"])["platform"]["kafka"]["mode"] == (
        "external"
    )
    assert (
        cluster.get("statefulsets", "-n", namespace, "-l", "app.kubernetes.io/component=postgres")[
            "items"
        ]
        == []
    )
    cluster.helm("uninstall", "platform", "-n", namespace, "--wait")
    wait_for("nothing left", lambda: not leftovers(cluster, namespace, "platform"), timeout=120)
