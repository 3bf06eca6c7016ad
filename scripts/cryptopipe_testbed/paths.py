"""Where the test bed keeps downloads, builds and run state."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
POMS_DIR = Path(__file__).resolve().parent / "poms"


def cache_root() -> Path:
    """Downloads and builds, keyed by component and version; never in git."""
    return Path(os.environ.get("CRYPTOPIPE_CACHE", Path.home() / ".cache" / "cryptopipe"))


def run_root() -> Path:
    """Configuration, data, logs and pid files of the running test bed.

    Outside the home folder, because PostgreSQL runs as its own account when we are root and
    must reach its data folder.
    """
    default = Path(tempfile.gettempdir()) / f"cryptopipe-testbed-{os.getuid()}"
    return Path(os.environ.get("CRYPTOPIPE_TESTBED_RUN", default))


def component_cache(name: str, version: str) -> Path:
    return cache_root() / f"{name}-{version}"


def component_run(name: str) -> Path:
    path = run_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = run_root() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_dir() -> Path:
    path = run_root() / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path
