"""The driver's Hadoop FileSystem (through the JVM): whatever `fs.defaultFS` Spark uses."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession


class HadoopFs:
    def __init__(self, spark: SparkSession, base: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._fs = jvm.org.apache.hadoop.fs.Path(base).getFileSystem(conf)

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def qualified(self, path: str) -> str:
        return str(self._fs.makeQualified(self._path(path)).toString())

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def mkdirs(self, path: str) -> None:
        self._fs.mkdirs(self._path(path))

    def delete(self, path: str, *, recursive: bool = True) -> None:
        self._fs.delete(self._path(path), recursive)

    def rename(self, source: str, target: str) -> None:
        if not self._fs.rename(self._path(source), self._path(target)):
            raise OSError(f"could not rename {source} to {target}")

    def list_files(self, path: str, *, recursive: bool = False) -> list[str]:
        """Paths of the files under `path` (none when it does not exist)."""
        if not self.exists(path):
            return []
        found = []
        iterator = self._fs.listFiles(self._path(path), recursive)
        while iterator.hasNext():
            found.append(str(iterator.next().getPath().toUri().getPath()))
        return found

    def glob(self, pattern: str) -> list[str]:
        statuses = self._fs.globStatus(self._path(pattern))
        return [] if statuses is None else [str(s.getPath().toUri().getPath()) for s in statuses]

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write to a temporary name, then rename: readers never see half a file."""
        temporary = f"{path}._writing"
        stream = self._fs.create(self._path(temporary), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()
        self.delete(path, recursive=False)
        self.rename(temporary, path)

    def read_bytes(self, path: str) -> bytes:
        stream = self._fs.open(self._path(path))
        try:
            data = self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
        return bytes(data)
