"""Candles as parquet on HDFS, partitioned by symbol, interval and date, exactly once per batch.

Spark may run a micro-batch again after a crash (the batch is only committed once the sink
returns); a re-run has the same offsets, state and batch time, so the same candles. Each batch
is written to a staging folder and its files then moved into the partitions under names that
carry the batch id (`batch-000000000042-00000.parquet`). Before moving, a run deletes the files
an earlier, interrupted run of the same batch left in the partitions it writes to (the same
partitions: a re-run has the same candles), so every candle is stored once. Only those
partitions are listed, not the whole table, whose partitions grow by the day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs

PARTITIONS = ("symbol", "interval", "date")
_PARTITION_DIR = re.compile(r"^symbol=([^/]+)/interval=([^/]+)/date=([^/]+)/[^/]+\.parquet$")


@dataclass(frozen=True)
class Partition:
    symbol: str
    interval: str
    date: str

    def folder(self) -> str:
        return f"symbol={self.symbol}/interval={self.interval}/date={self.date}"


@dataclass(frozen=True)
class ParquetLayout:
    """Where the candles table and its staging area live under the spec's HDFS base path."""

    base: str
    # Which query writes: queries of one pool (and pools sharing the base) number their batches
    # independently, so each stages under its own folder. Candle files need no such name: a
    # symbol's partitions have one writer at a time.
    writer: str = ""

    @property
    def table(self) -> str:
        return f"{self.base}/candles"

    def staging(self, batch_id: int) -> str:
        folder = f"{self.base}/_staging/candles"
        if self.writer:
            folder = f"{folder}/{self.writer}"
        return f"{folder}/batch={batch_id}"

    @staticmethod
    def file_prefix(batch_id: int) -> str:
        return f"batch-{batch_id:012d}-"


def with_date(candles: DataFrame) -> DataFrame:
    """The `date` partition column: the UTC day of the window start."""
    return candles.withColumn("date", F.date_format(F.col("window_start"), "yyyy-MM-dd"))


def write_batch(
    fs: HadoopFs, layout: ParquetLayout, candles: DataFrame, batch_id: int
) -> list[Partition]:
    """Store one batch's candles once; return the partitions it wrote to."""
    prefix = layout.file_prefix(batch_id)
    staging = layout.staging(batch_id)
    with_date(candles).write.mode("overwrite").partitionBy(*PARTITIONS).parquet(staging)
    staged: dict[Partition, list[str]] = {}
    for path in sorted(fs.list_files(staging, recursive=True)):
        match = _PARTITION_DIR.match(path.split(f"batch={batch_id}/", 1)[1])
        if match is not None:  # not _SUCCESS or another marker
            staged.setdefault(Partition(*match.groups()), []).append(path)
    for partition, paths in staged.items():
        target_folder = f"{layout.table}/{partition.folder()}"
        for leftover in fs.glob(f"{target_folder}/{prefix}*"):
            fs.delete(leftover, recursive=False)
        fs.mkdirs(target_folder)
        for index, path in enumerate(paths):
            fs.rename(path, f"{target_folder}/{prefix}{index:05d}.parquet")
    fs.delete(staging)
    return sorted(staged, key=lambda p: (p.symbol, p.interval, p.date))
