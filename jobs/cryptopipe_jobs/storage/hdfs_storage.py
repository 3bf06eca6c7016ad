"""The model registry's `Storage` protocol over WebHDFS (the `hdfs` package).

Atomic replace: a blob is written to a hidden temporary file in its folder, then renamed over
the target with WebHDFS `RENAME&renameoptions=OVERWRITE` (HDFS `rename2` with OVERWRITE, one
NameNode operation), so a reader sees the old bytes or the new ones, never a partial file and
never a missing one. Hidden names (a leading '.') are left out of `children`, as LocalStorage
does.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from hdfs import HdfsError, InsecureClient


def hdfs_path(location: str) -> str:
    """The absolute path of an `hdfs://[host:port]/path` URL or of a plain absolute path."""
    parsed = urlparse(location)
    if parsed.scheme not in ("", "hdfs"):
        raise ValueError(f"{location!r} is not an hdfs:// URL or an absolute path")
    path = parsed.path
    if not path.startswith("/"):
        raise ValueError(f"{location!r} has no absolute path")
    return posixpath.normpath(path)


def webhdfs_client(webhdfs_url: str, user: str = "root", timeout: float = 30.0) -> Any:
    return InsecureClient(webhdfs_url, user=user, timeout=timeout)


@dataclass(frozen=True)
class HdfsStorage:
    """Blobs under `root` (an absolute HDFS path), through a WebHDFS client."""

    client: Any
    root: str

    def _path(self, path: str) -> str:
        root = posixpath.normpath(self.root)
        resolved = posixpath.normpath(posixpath.join(root, path))
        if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
            raise ValueError(f"path escapes the registry: {path}")
        return resolved

    def read(self, path: str) -> bytes:
        target = self._path(path)
        try:
            with self.client.read(target) as reader:
                data: bytes = reader.read()
        except HdfsError as error:
            if self.client.status(target, strict=False) is None:
                raise FileNotFoundError(target) from error
            raise
        return data

    def write(self, path: str, data: bytes) -> None:
        target = self._path(path)
        folder, name = posixpath.split(target)
        temporary = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        self.client.write(temporary, data=data, overwrite=True)
        try:
            self.client._rename(temporary, destination=target, renameoptions="OVERWRITE")
        except BaseException:
            self.client.delete(temporary)
            raise

    def exists(self, path: str) -> bool:
        return self.client.status(self._path(path), strict=False) is not None

    def children(self, path: str) -> list[str]:
        folder = self._path(path)
        status = self.client.status(folder, strict=False)
        if status is None or status["type"] != "DIRECTORY":
            return []
        names: list[str] = self.client.list(folder)
        return sorted(name for name in names if not name.startswith("."))

    def delete(self, path: str) -> None:
        target = self._path(path)
        if target == posixpath.normpath(self.root):
            raise ValueError("refusing to delete the registry's root")
        self.client.delete(target, recursive=True)
