"""Every Dockerfile under images/ passes hadolint, runs as a non-root user, takes its base from
`ARG BASE_IMAGE`, carries the OCI labels, has a HEALTHCHECK where it serves, and installs exactly
the versions in uv.lock; scripts/images builds each of them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cryptopipe_testbed.components import images

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
BASE_DOCKERFILES = sorted((ROOT / "images" / "bases").glob("*/Dockerfile"))
OCI_LABELS = ("title", "description", "version", "licenses")
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def test_there_are_images() -> None:
    assert DOCKERFILES


@pytest.mark.parametrize(
    "dockerfile", DOCKERFILES + BASE_DOCKERFILES, ids=lambda path: path.parent.name
)
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


def _instructions(dockerfile: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    text = dockerfile.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "dockerfile", DOCKERFILES + BASE_DOCKERFILES, ids=lambda path: path.parent.name
)
def test_the_base_image_is_an_argument(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    assert instructions[0].startswith("ARG BASE_IMAGE=")
    assert [line for line in instructions if line.startswith("FROM ")] == ["FROM ${BASE_IMAGE}"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_oci_labels_name_the_image_and_its_version(dockerfile: Path) -> None:
    labels = " ".join(line for line in _instructions(dockerfile) if line.startswith("LABEL "))
    for key in OCI_LABELS:
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert f'org.opencontainers.image.title="cryptopipe-{dockerfile.parent.name}"' in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert "ARG VERSION=" in dockerfile.read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_an_image_that_listens_says_how_its_health_is_checked(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    if any(line.startswith("EXPOSE ") for line in instructions):
        assert any(line.startswith("HEALTHCHECK ") for line in instructions)


def test_scripts_images_builds_every_dockerfile() -> None:
    assert sorted(image.name for image in images.IMAGES) == sorted(
        path.parent.name for path in DOCKERFILES
    )
    assert sorted(images.BASES) == sorted(path.parent.name for path in BASE_DOCKERFILES)


def test_image_references_use_one_registry_and_the_project_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert images.reference("producer") == "localhost/cryptopipe/producer:0.1.0"
    monkeypatch.setenv("CRYPTOPIPE_IMAGE_REGISTRY", "registry.example:5000")
    assert images.reference("spark", "dev") == "registry.example:5000/cryptopipe/spark:dev"


@pytest.mark.parametrize(
    ("sources", "mirror"),
    [
        (
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
            "Types: deb\nURIs: http://mirror.example/debian-security\n",
            "http://mirror.example/debian",
        ),
        (
            "deb http://security.example/debian-security bookworm-security main\n"
            "deb http://ftp.example/debian/ bookworm main\n",
            "http://ftp.example/debian/",
        ),
        ("# nothing here\n", None),
    ],
)
def test_the_debian_mirror_is_the_one_apt_uses(sources: str, mirror: str | None) -> None:
    assert images.mirror_in(sources) == mirror


def test_podman_settings_fit_this_host() -> None:
    conf = images.containers_conf()
    assert 'runtime = "runc"' in conf and 'cgroup_manager = "cgroupfs"' in conf
    assert '"nofile=20000:20000"' in conf and '"nproc=32768:32768"' in conf
    storage = images.storage_conf()
    assert 'driver = "overlay"' in storage
    assert f'graphroot = "{images.home() / "storage"}"' in storage
