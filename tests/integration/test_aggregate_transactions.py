"""The aggregator's Kafka source sees committed trades only.

The producer publishes in transactions; a fenced or crashed producer's open transaction is
aborted and its successor sends those trades again. Spark's reader must skip the aborted copy
(and the transaction markers' offsets), or the candles would count those trades twice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aggregate_support import T0_MS, Scratch, create_topics, trade_record
from kafka import KafkaProducer
from pyspark.sql import DataFrame, SparkSession

from cryptopipe_jobs.aggregate import trades
from cryptopipe_schemas import topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import decode, encode, encode_key

pytestmark = pytest.mark.integration


def _send(producer: KafkaProducer, symbol: str, ids: range) -> None:
    for trade_id in ids:
        record = trade_record(
            symbol, trade_id, T0_MS + trade_id, Decimal("100.5"), Decimal("0.25"), False
        )
        producer.send(
            topics.trades(symbol), key=encode_key(symbol), value=encode(SchemaName.TRADE, record)
        )


# 3: the one partition's offsets split into three tasks, as the job splits them (minPartitions),
# so that range ends fall inside and between transactions.
@pytest.mark.parametrize("min_partitions", [None, 3])
def test_spark_reads_committed_trades_only(
    spark: SparkSession, kafka_bootstrap: str, tmp_path: Path, min_partitions: int | None
) -> None:
    symbol = f"TX{uuid.uuid4().hex[:8].upper()}"
    topic = topics.trades(symbol)
    scratch = Scratch(spark, kafka_bootstrap, topics=[topic])
    try:
        create_topics(kafka_bootstrap, [topic], partitions=1)
        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"test.{symbol}", acks="all"
        )
        try:
            producer.init_transactions()
            producer.begin_transaction()
            _send(producer, symbol, range(1, 9))
            producer.commit_transaction()
            producer.begin_transaction()
            _send(producer, symbol, range(9, 13))  # aborted: sent again below
            producer.flush()
            producer.abort_transaction()
            producer.begin_transaction()
            _send(producer, symbol, range(9, 16))
            producer.commit_transaction()
        finally:
            producer.close()

        seen: list[dict[str, Any]] = []

        def collect(frame: DataFrame, _batch_id: int) -> None:
            seen.extend(decode(bytes(row.value)).record for row in frame.collect())

        query = (
            trades.kafka_trades(spark, kafka_bootstrap, [symbol], min_partitions=min_partitions)
            .writeStream.option("checkpointLocation", f"file://{tmp_path}/checkpoint")
            .foreachBatch(collect)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(timeout=180)
        assert query.exception() is None
        assert [int(r["trade_id"]) for r in seen] == list(range(1, 16))
    finally:
        scratch.cleanup()
