"""A real kind cluster, made offline with podman from the node image the test bed assembles
(cryptopipe_testbed.kind_image): Ready, cluster DNS, kind's default storage, and a delete that
leaves the host as it found it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kind_support import differences, host_state, kubectl

from cryptopipe_testbed import kind_cluster, kind_image, versions

pytestmark = pytest.mark.integration

NAME = "cptb-kind-check"
# busybox, preloaded in the node image for kind's storage helper.
BUSYBOX = kind_image.kind_storage()[2]

CHECK_POD = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: check}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: check}
spec:
  restartPolicy: Never
  containers:
    - name: check
      image: %(image)s
      imagePullPolicy: Never
      command: ["/bin/sh", "-c"]
      args:
        - nslookup kubernetes.default.svc.cluster.local
          && echo written-on-the-volume > /data/file && cat /data/file
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: check}
"""


@pytest.fixture(scope="module")
def before() -> Iterator[dict[str, object]]:
    kind_image.build()  # the node image is built (or found) before the host is looked at
    state = host_state()
    yield state
    kind_cluster.delete(NAME)


def wait_for(what: str, probe: object, timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()  # type: ignore[operator]
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_a_kind_cluster_runs_and_its_delete_leaves_nothing(before: dict[str, object]) -> None:
    seconds = kind_cluster.create(NAME)
    print(f"kind create cluster -> Ready: {seconds:.1f}s")
    assert NAME in kind_cluster.clusters()

    nodes = json.loads(kubectl(NAME, "get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 1
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"] == versions.KUBERNETES

    kubectl(NAME, "apply", "-f", "-", stdin=CHECK_POD % {"image": BUSYBOX})

    def finished() -> str | None:
        pod = json.loads(kubectl(NAME, "get", "pod", "check", "-o", "json"))
        phase = str(pod["status"].get("phase"))
        return phase if phase in {"Succeeded", "Failed"} else None

    phase = wait_for("the check pod to finish", finished)
    log = kubectl(NAME, "logs", "check")
    assert phase == "Succeeded", log
    assert "kubernetes.default.svc.cluster.local" in log and "10.96.0.1" in log, log
    assert "written-on-the-volume" in log
    claim = json.loads(kubectl(NAME, "get", "pvc", "check", "-o", "json"))
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "standard"

    peak = kind_cluster.peak_memory(NAME)
    print(f"kind node container peak memory: {peak / 2**20:.0f} MiB")
    assert peak > 100 * 2**20

    running = host_state()
    assert differences(before, running), "a running cluster changes the host (containers, links)"
    undone = kind_cluster.delete(NAME)
    assert f"cluster {NAME}" in undone
    assert differences(before, host_state()) == {}
