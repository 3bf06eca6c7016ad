"""Topics read by an independent, standard client: librdkafka (confluent-kafka) with Confluent's
own registry client and Avro deserializer, which know nothing of our codec. If our framing or our
registered schemas were wrong, this is where it shows."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def confluent_records(
    bootstrap: str, topic: str, registry_url: str, count: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """The first `count` committed records of `topic` (every partition from its beginning),
    decoded by Confluent's AvroDeserializer with the schemas its registry client fetches by id;
    then one more second of polling, in which nothing else may come."""
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"confluent-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        context = SerializationContext(topic, MessageField.VALUE)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(records)} of {count} records in {timeout} s")
            message = consumer.poll(1.0)
            if message is None:
                if len(records) >= count:
                    break
                continue
            error = message.error()
            if error is not None:
                raise RuntimeError(f"{topic}: {error}")
            record = deserialize(message.value(), context)
            if isinstance(record, dict):
                records.append(record)
            if len(records) > count:
                break  # more than the caller's own reader found: its assertion shows it
        return records
    finally:
        consumer.close()
