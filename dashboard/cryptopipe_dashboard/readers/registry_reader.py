"""The model registry's versions and training reports, from a local folder or over WebHDFS.

Reads the registry's on-disk layout (model/cryptopipe_model/registry.py): `versions/<v>/
manifest.json`, `versions/<v>/extra/<files>`, `current.json`. Only JSON, Markdown and PNG
files; the dashboard never loads a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from hdfs import InsecureClient
from hdfs.util import HdfsError

from cryptopipe_dashboard.readers.outcome import Read, attempt


class Files(Protocol):
    def read(self, path: str) -> bytes: ...

    def children(self, path: str) -> list[str]: ...


@dataclass(frozen=True)
class LocalFiles:
    root: Path

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def children(self, path: str) -> list[str]:
        folder = self.root / path
        return sorted(child.name for child in folder.iterdir()) if folder.is_dir() else []


@dataclass(frozen=True)
class WebHdfsFiles:
    client: InsecureClient
    root: str

    def read(self, path: str) -> bytes:
        with self.client.read(f"{self.root}/{path}") as reader:
            data: bytes = reader.read()
            return data

    def children(self, path: str) -> list[str]:
        listed = self.client.list(f"{self.root}/{path}", strict=False)
        return sorted(listed) if listed else []


def files_for(location: str) -> Files:
    """`/a/folder` (local) or `http://namenode:9870/a/folder` (WebHDFS)."""
    if location.startswith(("http://", "https://")):
        parts = urlsplit(location)
        return WebHdfsFiles(
            InsecureClient(f"{parts.scheme}://{parts.netloc}", timeout=5), parts.path.rstrip("/")
        )
    return LocalFiles(Path(location))


@dataclass(frozen=True)
class TrainingReport:
    version: str
    manifest: dict[str, Any]
    current: str | None
    markdown: str | None
    images: dict[str, bytes]


def latest_report(files: Files) -> TrainingReport | None:
    versions = [name for name in files.children("versions") if name in _complete(files)]
    if not versions:
        return None
    version = versions[-1]
    manifest = json.loads(files.read(f"versions/{version}/manifest.json"))
    try:
        current = str(json.loads(files.read("current.json"))["version"])
    except (FileNotFoundError, HdfsError, KeyError):
        current = None
    extra = files.children(f"versions/{version}/extra")
    markdown = next(
        (
            files.read(f"versions/{version}/extra/{name}").decode()
            for name in extra
            if name.endswith(".md")
        ),
        None,
    )
    images = {
        name: files.read(f"versions/{version}/extra/{name}")
        for name in extra
        if name.endswith(".png")
    }
    return TrainingReport(version, manifest, current, markdown, images)


def _complete(files: Files) -> set[str]:
    """Versions whose manifest exists: the registry writes it last."""
    return {
        name
        for name in files.children("versions")
        if "manifest.json" in files.children(f"versions/{name}")
    }


def explain(error: Exception) -> str:
    if isinstance(error, HdfsError | ConnectionError | OSError):
        return f"the model registry cannot be read ({error}); showing everything else."
    return f"the model registry has something unexpected ({type(error).__name__}: {error})."


def read_latest_report(location: str | None, symbol: str) -> Read[TrainingReport | None]:
    if location is None:
        return Read(None)
    where = location.format(symbol=symbol.lower())
    return attempt(f"model registry ({where})", lambda: latest_report(files_for(where)), explain)
