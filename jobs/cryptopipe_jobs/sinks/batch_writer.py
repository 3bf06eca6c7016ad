"""One micro-batch of finalized candles to every enabled sink (Spark's foreachBatch).

Order: HDFS parquet (and its Hive partitions), then the Sheets outbox, then Kafka, so that a
candle on Kafka is already on HDFS and in Hive (consumers such as the local runner's trainer
rely on it). All three are
safe to repeat when Spark re-runs an uncommitted batch after a crash: parquet and the outbox
replace what the batch wrote before, and Kafka consumers deduplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cryptopipe_jobs.sinks import hive, kafka_candles, parquet
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.sinks.sheets_outbox import TIME_FIELDS, Outbox, SheetsSync, to_json
from cryptopipe_schemas.avro_schemas import CANDLE_FIELDS
from cryptopipe_schemas.registry import SchemaIds

log = logging.getLogger("cryptopipe.aggregate")


@dataclass(frozen=True)
class SinkTargets:
    parquet: parquet.ParquetLayout | None
    hive_table: str | None
    kafka_bootstrap: str | None
    sheets_outbox: Outbox | None
    ids: SchemaIds


def outbox_rows(candles: DataFrame) -> list[dict[str, object]]:
    millis = {name: F.unix_millis(F.col(name)).alias(name) for name in TIME_FIELDS}
    selected = candles.select(*(millis.get(name, F.col(name)) for name in CANDLE_FIELDS))
    return [row.asDict() for row in selected.collect()]


class BatchWriter:
    def __init__(
        self,
        spark: SparkSession,
        fs: HadoopFs,
        targets: SinkTargets,
        sheets_sync: SheetsSync | None = None,
    ) -> None:
        self._spark = spark
        self._fs = fs
        self._targets = targets
        self._sheets_sync = sheets_sync

    def __call__(self, candles: DataFrame, batch_id: int) -> None:
        targets = self._targets
        candles = candles.persist()
        try:
            count = candles.count()
            if count:
                if targets.parquet is not None:
                    partitions = parquet.write_batch(self._fs, targets.parquet, candles, batch_id)
                    if targets.hive_table is not None:
                        hive.add_partitions(self._spark, targets.hive_table, partitions)
                if targets.sheets_outbox is not None:
                    targets.sheets_outbox.put(batch_id, to_json(outbox_rows(candles)))
                if targets.kafka_bootstrap is not None:
                    kafka_candles.write_batch(candles, targets.kafka_bootstrap, targets.ids)
        finally:
            candles.unpersist()
        if count and self._sheets_sync is not None:
            self._sheets_sync.notify()
        log.info("candles written", extra={"batch_id": batch_id, "candles": count})
