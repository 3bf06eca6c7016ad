"""Prometheus and promtool, built from the Prometheus Go module, and the Prometheus Operator's
CRDs from its Go module (stdlib only).

- `go install github.com/prometheus/prometheus/cmd/{prometheus,promtool}@<version>` into
  `~/.cache/cryptopipe/prometheus-<version>/bin`: about 5 minutes cold on 2 cores (the server
  links every service discovery's SDK), seconds once the Go caches are warm. The web UI's assets
  are not embedded (the `builtinassets` tag needs an npm build): the HTTP API works, the UI not.
- The CRDs: `example/prometheus-operator-crd/` inside
  `github.com/prometheus-operator/prometheus-operator@<version>` (`go mod download`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from cryptopipe_testbed import kube_build, paths, process, versions

MARKER = ".complete"
MODULE = "github.com/prometheus/prometheus"
OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
MONITORING_CRDS = (
    "monitoring.coreos.com_podmonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
    "monitoring.coreos.com_servicemonitors.yaml",
)


def bin_dir() -> Path:
    return paths.component_cache("prometheus", versions.PROMETHEUS) / "bin"


def promtool_path() -> Path:
    return bin_dir() / "promtool"


def prometheus_path() -> Path:
    return bin_dir() / "prometheus"


def install() -> Path:
    """Build both binaries once; the folder they are in."""
    dest = paths.component_cache("prometheus", versions.PROMETHEUS)
    if not (dest / MARKER).exists():
        shutil.rmtree(dest / "bin", ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        process.run(
            [
                "go",
                "install",
                "-trimpath",
                "-ldflags",
                "-s -w",
                f"{MODULE}/cmd/promtool@{versions.PROMETHEUS}",
                f"{MODULE}/cmd/prometheus@{versions.PROMETHEUS}",
            ],
            log=paths.log_dir() / f"install-prometheus-{versions.PROMETHEUS}.log",
            env={**kube_build.go_env(), "GOBIN": str(dest / "bin")},
        )
        (dest / MARKER).write_text("ok\n")
    return bin_dir()


def monitoring_crd_files() -> list[Path]:
    """PodMonitor, PrometheusRule and ServiceMonitor CRDs of the pinned Prometheus Operator."""
    dest = paths.cache_root() / f"upstream-crds-prometheus-operator-{versions.PROMETHEUS_OPERATOR}"
    if not (dest / MARKER).exists():
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        done = subprocess.run(
            ["go", "mod", "download", "-json", f"{OPERATOR_MODULE}@{versions.PROMETHEUS_OPERATOR}"],
            env={**os.environ, **kube_build.go_env(), "GOFLAGS": "-mod=mod"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"go mod download failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        crds = Path(json.loads(done.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
        for name in MONITORING_CRDS:
            shutil.copyfile(crds / name, staging / name)
        (staging / MARKER).write_text("ok\n")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    return [dest / name for name in MONITORING_CRDS]
