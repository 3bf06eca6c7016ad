"""A pool's member specs from a folder: one YAML or JSON file per pipeline.

In a cluster the folder is a mounted ConfigMap, which the kubelet updates in place, so a long-
running job sees pipelines join and leave without a restart; locally it is any folder. Reading is
repeated: a file that does not parse is reported and left out, never fatal, so one broken
pipeline cannot stop its pool-mates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, load_spec_file

log = logging.getLogger("cryptopipe.specs")
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class SpecFolderReading:
    specs: tuple[CryptoPipelineSpec, ...]
    problems: tuple[str, ...]  # one line per file left out


def spec_files(folder: Path) -> list[Path]:
    """The folder's spec files, by name; hidden entries (a ConfigMap volume's `..data` and
    timestamped folders) are not pipelines."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if not path.name.startswith(".") and path.suffix in SPEC_SUFFIXES and path.is_file()
    )


def read_spec_folder(folder: Path) -> SpecFolderReading:
    specs: list[CryptoPipelineSpec] = []
    problems: list[str] = []
    for path in spec_files(folder):
        try:
            specs.append(load_spec_file(str(path)))
        except (SpecError, OSError) as error:
            problems.append(str(error))
    for problem in problems:
        log.error("spec left out", extra={"problem": problem[:1000]})
    return SpecFolderReading(tuple(specs), tuple(problems))
