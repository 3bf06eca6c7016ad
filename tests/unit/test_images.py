"""Every Dockerfile under images/ passes hadolint, runs as a non-root user, has a HEALTHCHECK
where it serves, and installs exactly the versions in uv.lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def test_there_are_images() -> None:
    assert DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [HADOLINT, str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = [
        line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("USER ")
    ]
    assert users and users[-1].split(":")[0] not in {"0", "root"}


def test_the_dashboard_image_has_a_healthcheck_on_its_port() -> None:
    text = (ROOT / "images" / "dashboard" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and "8501/_stcore/health" in text and "EXPOSE 8501" in text


def test_image_requirements_match_the_lock_file() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "export-image-requirements"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
