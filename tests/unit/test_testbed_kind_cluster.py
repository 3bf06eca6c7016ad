"""kind on a machine that has not built it yet: no cluster can exist, and asking is no error
(a fresh machine's CI once failed here, asking before the build). The built kind's answer is
the cluster e2e test's to check (tests/e2e/test_cluster_pipeline.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptopipe_testbed import kind_build, kind_cluster

pytestmark = pytest.mark.unit


def test_no_clusters_before_kind_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOPIPE_CACHE", str(tmp_path / "cache"))
    assert not (kind_build.kind_bin() / "kind").exists()
    assert kind_cluster.clusters() == []
