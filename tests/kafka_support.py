"""Reading whole topics of the test bed's Kafka, for checks on what a component published, and
the broker's SCRAM super user for the tests that make users."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, ScramMechanism, UserScramCredentialUpsertion

from cryptopipe_testbed.components import kafka


def scram_admin() -> tuple[str, str]:
    """The broker's SCRAM super user, made over PLAINTEXT (as ANONYMOUS, the other super user)
    with the test bed's one password for it, so tests running side by side never log each
    other's clients out: (username, password)."""
    password = kafka.scram_admin_password()
    root = KafkaAdminClient(bootstrap_servers=f"{kafka.HOST}:{kafka.BROKER_PORT}")
    try:
        root.alter_user_scram_credentials(
            [
                UserScramCredentialUpsertion(
                    kafka.SCRAM_ADMIN, ScramMechanism.SCRAM_SHA_512, password
                )
            ]
        )
    finally:
        root.close()
    return kafka.SCRAM_ADMIN, password


def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every committed record value of every partition, from the beginning to the end offsets.

    read_committed, as every reader of the trades topics: records of an aborted transaction (a
    fenced or crashed producer's) are not part of what was published.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        while any(consumer.position(p) < ends[p] for p in partitions):
            batches = consumer.poll(timeout_ms=2000)
            if not batches:
                break  # only transaction markers left before the end offsets
            for records in batches.values():
                values.extend(record.value for record in records)
        return values
    finally:
        consumer.close()


def end_offset(bootstrap: str, topic: str) -> int:
    """The sum of the topic's partitions' end offsets (0 if absent). For a transactional topic
    this counts markers and aborted records too: count records with CommittedRecords."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()
