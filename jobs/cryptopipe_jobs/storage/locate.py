"""Where the registry lives: a local folder, or an hdfs:// URL read over WebHDFS."""

from __future__ import annotations

from pathlib import Path

from cryptopipe_jobs.storage.hdfs_storage import HdfsStorage, hdfs_path, webhdfs_client
from cryptopipe_model.registry import LocalStorage, Storage


def is_hdfs(location: str) -> bool:
    return location.startswith("hdfs://")


def open_storage(location: str, webhdfs_url: str | None) -> Storage:
    """LocalStorage for a folder; HdfsStorage for `hdfs://[host:port]/path`, which needs the
    NameNode's WebHDFS address (the URL's host and port are the RPC endpoint, not WebHDFS)."""
    if is_hdfs(location):
        if not webhdfs_url:
            raise ValueError(f"{location} is on HDFS: give --webhdfs-url")
        return HdfsStorage(webhdfs_client(webhdfs_url), hdfs_path(location))
    return LocalStorage(Path(location))
