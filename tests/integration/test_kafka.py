"""The test bed's Kafka is a real KRaft broker that kafka-python can administer and use."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

pytestmark = pytest.mark.integration


def _topic() -> str:
    return f"smoke.{uuid.uuid4().hex[:10]}"


def test_topic_admin_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = _topic()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="smoke-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        described = admin.describe_topics([topic])
        assert described[0]["name"] == topic
        assert len(described[0]["partitions"]) == 3

        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(30)}
        for key, value in sent.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
        producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=f"g-{topic}",
            consumer_timeout_ms=10_000,
        )
        received = {record.key: record.value for record in consumer}
        consumer.close()
        assert received == sent
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_topics_are_never_created_implicitly(kafka_bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=3_000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(_topic(), value=b"nobody created this topic").get(timeout=5)
    finally:
        producer.close(timeout=5)
