"""helm against our charts, offline: `helm template` renders them as a release `rel` in
namespace `team` (helm is the test bed's build; no API server is needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_CHART = ROOT / "charts" / "cryptopipe-platform"
OPERATOR_CHART = ROOT / "charts" / "cryptopipe-operator"


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render_text(helm: str, *args: str, chart: Path = PLATFORM_CHART) -> str:
    return run_helm(helm, "template", "rel", str(chart), "--namespace", "team", *args).stdout


def render_docs(helm: str, *args: str, chart: Path = PLATFORM_CHART) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(helm, *args, chart=chart)) if doc]
