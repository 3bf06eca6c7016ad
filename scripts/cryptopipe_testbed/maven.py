"""Resolve jars from Maven Central into the cache with `mvn dependency:copy-dependencies`."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptopipe_testbed import paths, process

COMPLETE_MARKER = ".complete"


def local_repository() -> Path:
    return paths.cache_root() / "m2"


def is_complete(dest: Path, fingerprint: str = "ok") -> bool:
    marker = dest / COMPLETE_MARKER
    return marker.exists() and marker.read_text().strip() == fingerprint


def _fingerprint(pom: str, properties: Mapping[str, str], extra: Sequence[str]) -> str:
    """Changes whenever the pom or its arguments do, so an edited pom is resolved again."""
    digest = hashlib.sha256((paths.POMS_DIR / pom).read_bytes())
    digest.update(repr((sorted(properties.items()), list(extra))).encode())
    return digest.hexdigest()


def copy_dependencies(
    pom: str,
    dest: Path,
    properties: Mapping[str, str],
    extra: Sequence[str] = (),
) -> None:
    """Copy the dependencies of `poms/<pom>` into `dest`, once; later calls find the marker."""
    fingerprint = _fingerprint(pom, properties, extra)
    if is_complete(dest, fingerprint):
        return
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(paths.POMS_DIR / pom),
        f"-Dmaven.repo.local={local_repository()}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        *(f"-D{key}={value}" for key, value in properties.items()),
        *extra,
    ]
    process.run(argv, log=paths.log_dir() / f"install-{dest.parent.name}.log")
    (staging / COMPLETE_MARKER).write_text(fingerprint + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(dest)
