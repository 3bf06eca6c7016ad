"""Kafka with SCRAM and ACLs (issue 27): the test bed's broker has SASL listeners that its
StandardAuthorizer holds to ACLs. Users and ACLs are made as the operator makes them for an
external Kafka (cryptopipe_operator.kafka_access, through the Admin API); then the real producer
and the real Spark aggregator run as those users, with the credentials in their environment as
the pods get them, and Kafka itself refuses whatever the ACLs do not allow."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aggregate_support import Driver, wait_for
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAuthorizationFailedError
from kafka_support import read_topic

from cryptopipe_jobs.predict.main import _ensure_member_topics as ensure_member_topics
from cryptopipe_jobs.predict.members import Member
from cryptopipe_operator.kafka_access import Role, Scope, apply, grants, user_name
from cryptopipe_schemas import kafka_auth, topics
from cryptopipe_schemas.codec import decode
from cryptopipe_schemas.spec import parse_spec, to_mapping
from testbed_plugin import TestbedSession

pytestmark = pytest.mark.integration

MECHANISM = "SCRAM-SHA-512"
REPLAYED_KLINES = 12  # the embedded history's newest hours: 4 trades each


@pytest.fixture(scope="module")
def brokers(testbed: TestbedSession) -> dict[str, str]:
    return testbed.ensure("kafka")


@pytest.fixture
def admin(brokers: dict[str, str]) -> Iterator[KafkaAdminClient]:
    # The PLAINTEXT listener's principal is the broker's super user: the operator's admin role.
    client = KafkaAdminClient(bootstrap_servers=brokers["CRYPTOPIPE_KAFKA_BOOTSTRAP"])
    yield client
    client.close()


def scram_env(user: str, password: str) -> dict[str, str]:
    return {
        "CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CRYPTOPIPE_KAFKA_SASL_MECHANISM": MECHANISM,
        "CRYPTOPIPE_KAFKA_USERNAME": user,
        "CRYPTOPIPE_KAFKA_PASSWORD": password,
    }


def scram_client(user: str, password: str) -> dict[str, str]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


def symbol() -> str:
    return f"A{uuid.uuid4().hex[:8].upper()}USDT"


def replay_spec(tmp_path: Path, traded: str, **sinks: object) -> Path:
    spec = parse_spec(
        {
            "symbol": traded,
            "source": {
                "kind": "replay",
                "replay": {"data": "embedded", "speed": 0, "tail": REPLAYED_KLINES},
            },
            "intervals": ["1h"],
            "watermark": "1m",
            "model": {"interval": "1h"},
            "sinks": {"hdfs": {"path": f"/it/auth-{traded.lower()}"}, **sinks},
        }
    )
    path = tmp_path / f"{traded}.json"
    path.write_text(json.dumps(to_mapping(spec)))
    return path


def scope_of(traded: str) -> Scope:
    return Scope(
        symbols=(traded,),
        intervals=("1h",),
        model_intervals=("1h",),
        source="replay",
        transactional_id=f"cryptopipe-producer.replay.{traded.lower()}",
        predictor_group=f"cryptopipe-predict.{traded.lower()}",
    )


def run_producer(
    brokers: dict[str, str], spec: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "cryptopipe_jobs.producer.main",
        "--bootstrap-servers", brokers["CRYPTOPIPE_KAFKA_SCRAM_BOOTSTRAP"],
        "--spec", str(spec), "--metrics-port", "0",
    ]  # fmt: skip
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env},
    )


def test_the_producer_user_writes_its_trades_and_kafka_refuses_it_the_rest(
    brokers: dict[str, str], admin: KafkaAdminClient, tmp_path: Path
) -> None:
    traded = symbol()
    user, password = user_name(Role.PRODUCER, "auth", traded.lower()), secrets.token_hex(16)
    apply(admin, user, password, grants(Role.PRODUCER, scope_of(traded)), MECHANISM)

    result = run_producer(brokers, replay_spec(tmp_path, traded), scram_env(user, password))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"SASL_PLAINTEXT as {user} ({MECHANISM})" in result.stderr  # says how it connects
    trades = read_topic(brokers["CRYPTOPIPE_KAFKA_BOOTSTRAP"], topics.trades(traded))
    assert len(trades) == 4 * REPLAYED_KLINES
    assert {decode(value).record["symbol"] for value in trades} == {traded}

    scram = brokers["CRYPTOPIPE_KAFKA_SCRAM_BOOTSTRAP"]
    # The same user may not write another symbol's trades, nor read the candles.
    producer = KafkaProducer(bootstrap_servers=scram, **scram_client(user, password))
    try:
        with pytest.raises(KafkaError):
            producer.send(topics.trades(symbol()), b"x").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=scram, **scram_client(user, password))
    try:
        candles = topics.candles("1h", traded)
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.assign([TopicPartition(candles, 0)])
            consumer.seek_to_beginning()
            consumer.poll(timeout_ms=10_000)
            consumer.position(TopicPartition(candles, 0))
    finally:
        consumer.close()


def test_a_wrong_password_or_missing_settings_stop_the_producer_with_the_reason(
    brokers: dict[str, str], admin: KafkaAdminClient, tmp_path: Path
) -> None:
    traded = symbol()
    user = user_name(Role.PRODUCER, "auth", traded.lower())
    apply(admin, user, secrets.token_hex(16), grants(Role.PRODUCER, scope_of(traded)), MECHANISM)
    spec = replay_spec(tmp_path, traded)

    wrong = run_producer(brokers, spec, scram_env(user, "not-the-password"))
    assert wrong.returncode != 0
    assert "authentication" in wrong.stderr.lower(), wrong.stderr[-2000:]

    incomplete = {**scram_env(user, ""), "CRYPTOPIPE_KAFKA_PASSWORD": ""}
    missing = run_producer(brokers, spec, incomplete)
    assert missing.returncode == 1
    assert "SASL_PLAINTEXT needs CRYPTOPIPE_KAFKA_PASSWORD" in missing.stderr


def test_spark_reads_trades_and_writes_candles_as_the_aggregator_user(
    brokers: dict[str, str],
    admin: KafkaAdminClient,
    spark_env: dict[str, str],
    tmp_path: Path,
) -> None:
    traded = symbol()
    scope = scope_of(traded)
    producer_user = user_name(Role.PRODUCER, "auth", traded.lower())
    aggregator_user = user_name(Role.AGGREGATOR, "auth", traded.lower())
    passwords = {producer_user: secrets.token_hex(16), aggregator_user: secrets.token_hex(16)}
    apply(admin, producer_user, passwords[producer_user], grants(Role.PRODUCER, scope), MECHANISM)
    aggregator_grants = grants(Role.AGGREGATOR, scope)
    apply(admin, aggregator_user, passwords[aggregator_user], aggregator_grants, MECHANISM)
    spec = replay_spec(
        tmp_path, traded, hdfs={"enabled": False, "path": "/it/auth"}, hive={"enabled": False}
    )
    produced = run_producer(brokers, spec, scram_env(producer_user, passwords[producer_user]))
    assert produced.returncode == 0, produced.stderr[-3000:]

    hdfs_url = spark_env["CRYPTOPIPE_HDFS_URL"]
    args = [
        "--spec", str(spec),
        "--bootstrap-servers", brokers["CRYPTOPIPE_KAFKA_SCRAM_BOOTSTRAP"],
        "--hdfs-url", hdfs_url,
        "--checkpoint", f"{hdfs_url}/it/auth-{traded.lower()}/checkpoint",
        "--jars", spark_env["CRYPTOPIPE_SPARK_JARS"],
        "--master", "local[1]",
        "--available-now",
    ]  # fmt: skip
    driver = Driver(
        args, tmp_path / "driver.log", scram_env(aggregator_user, passwords[aggregator_user])
    )
    wait_for(lambda: not driver.alive(), 300, "the aggregator to drain the trades and stop")
    assert driver.process.returncode == 0, driver.tail()
    candles = read_topic(brokers["CRYPTOPIPE_KAFKA_BOOTSTRAP"], topics.candles("1h", traded))
    windows = {decode(value).record["window_start"] for value in candles}
    assert len(windows) >= REPLAYED_KLINES - 1, driver.tail()  # the newest may still be open


def test_the_predictor_user_makes_a_missing_candles_topic_and_leaves_an_existing_ones_configs(
    brokers: dict[str, str], admin: KafkaAdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What crashed the predictor pod under ACLs: at start it ensures its candles topic, which is
    the aggregator's; with only read rights on it, it must not try to change its configs."""
    made, existing = symbol(), symbol()
    user, password = user_name(Role.PREDICTOR, "auth", made.lower()), secrets.token_hex(16)
    scope = Scope(
        symbols=(made, existing),
        intervals=("1h",),
        model_intervals=("1h",),
        source="replay",
        transactional_id="unused",
        predictor_group="unused",
    )
    apply(admin, user, password, grants(Role.PREDICTOR, scope), MECHANISM)
    # The aggregator made this one, with a retention the spec does not say (the broker's).
    admin.create_topics([NewTopic(topics.candles("1h", existing), 1, 1)])
    members = [
        Member(parse_spec({"symbol": s, "intervals": ["1h"]}), "/unused") for s in (made, existing)
    ]
    # In this process, as the pod would be: the settings are read once per process, so the
    # cache is cleared on the way in and out (another test may have read them already).
    with monkeypatch.context() as patched:
        for key, value in scram_env(user, password).items():
            patched.setenv(key, value)
        kafka_auth.current.cache_clear()
        try:
            ensure_member_topics(brokers["CRYPTOPIPE_KAFKA_SCRAM_BOOTSTRAP"], members)
        finally:
            kafka_auth.current.cache_clear()
    names = set(admin.list_topics())
    assert {topics.candles("1h", made), topics.forecasts(made), topics.forecasts(existing)} <= names
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topics.candles("1h", existing))],
        config_filter="all",
    )["topic"][topics.candles("1h", existing)]
    assert described["retention.ms"]["value"] == str(7 * 24 * 3_600_000)  # left alone
