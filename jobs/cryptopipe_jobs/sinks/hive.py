"""Hive partitions: each batch registers the partitions it wrote, so queries see them at once."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import SparkSession

from cryptopipe_jobs.sinks.parquet import Partition


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def add_partitions_sql(table: str, partitions: Sequence[Partition]) -> str | None:
    """One idempotent ALTER TABLE for all partitions (None when there are none)."""
    if not partitions:
        return None
    specs = " ".join(
        f"PARTITION (symbol={_literal(p.symbol)}, `interval`={_literal(p.interval)}, "
        f"`date`={_literal(p.date)})"
        for p in partitions
    )
    return f"ALTER TABLE {table} ADD IF NOT EXISTS {specs}"


def add_partitions(spark: SparkSession, table: str, partitions: Sequence[Partition]) -> None:
    statement = add_partitions_sql(table, partitions)
    if statement is not None:
        spark.sql(statement)
