"""Kafka keeps what a pipeline's spec says (`retention`), on the test bed's real broker: the
jobs create their topics with those configs, set them again when the spec changes, and leave
them alone when nothing changed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from cryptopipe_jobs.aggregate.main import pool_candle_topics
from cryptopipe_jobs.kafka_io import TopicConfigError, TopicSettings, ensure_topics, log_ensured
from cryptopipe_jobs.producer.kafka_sink import producer_topics
from cryptopipe_schemas import topics
from cryptopipe_schemas.spec import parse_spec

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@pytest.fixture
def made() -> list[str]:
    """Topics a test makes, deleted after it."""
    return []


@pytest.fixture
def admin(kafka_bootstrap: str, made: list[str]) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="retention-test")
    yield client
    leftover = sorted(set(made) & set(client.list_topics()))
    if leftover:
        client.delete_topics(leftover)
    client.close()


def live(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    keys = {"retention.ms": None, "cleanup.policy": None}
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs=keys)], config_filter="all"
    )
    return {k: v["value"] for k, v in described["topic"][topic].items()}


def test_topics_follow_the_specs_retention(
    admin: KafkaAdminClient, made: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    symbol = f"R{uuid.uuid4().hex[:8].upper()}USDT"
    spec = parse_spec({"symbol": symbol, "intervals": ["1m", "1h"], "retention": {"trades": "12h"}})
    wanted = {**producer_topics([spec], "binance"), **pool_candle_topics([spec])}
    trades, candles = topics.trades(symbol), topics.candles("1m", symbol)
    made.extend(t for t in wanted if t != topics.deadletter("binance"))

    first = ensure_topics(admin, wanted, TopicSettings())
    assert set(first.created) >= {trades, candles, topics.candles("1h", symbol)}
    assert live(admin, trades) == {"retention.ms": str(12 * HOUR_MS), "cleanup.policy": "delete"}
    assert live(admin, candles)["retention.ms"] == "-1"  # the default: forever

    # What the jobs log (a key named "created" once crashed them: a LogRecord attribute).
    with caplog.at_level(logging.INFO, logger="retention-test"):
        log_ensured(logging.getLogger("retention-test"), first)
    (logged,) = caplog.records
    assert logged.topics_created == first.created  # type: ignore[attr-defined]

    again = ensure_topics(admin, wanted, TopicSettings())
    assert (again.created, again.reconfigured) == ([], [])
    caplog.clear()
    log_ensured(logging.getLogger("retention-test"), again)
    assert caplog.records == []  # nothing changed: no line

    # The spec changes: the next start of the job sets the new value on the existing topic.
    changed = parse_spec(
        {"symbol": symbol, "intervals": ["1m", "1h"], "retention": {"trades": "2d"}}
    )
    after = ensure_topics(admin, producer_topics([changed], "binance"), TopicSettings())
    assert after.created == [] and after.reconfigured == [trades]
    assert live(admin, trades)["retention.ms"] == str(48 * HOUR_MS)


def test_a_topic_made_elsewhere_gets_the_specs_configs(
    admin: KafkaAdminClient, made: list[str]
) -> None:
    topic = f"forecasts.r{uuid.uuid4().hex[:8]}usdt"
    made.append(topic)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    assert live(admin, topic)["retention.ms"] == str(7 * 24 * HOUR_MS)  # the broker's default
    ensured = ensure_topics(admin, {topic: {"retention.ms": -1}}, TopicSettings())
    assert ensured.reconfigured == [topic]
    assert live(admin, topic)["retention.ms"] == "-1"


def test_a_refused_config_is_an_error_that_names_it(
    admin: KafkaAdminClient, made: list[str]
) -> None:
    topic = f"trades.r{uuid.uuid4().hex[:8]}usdt"
    made.append(topic)
    ensure_topics(admin, [topic], TopicSettings())
    with pytest.raises(TopicConfigError, match=r"cleanup\.policy"):
        ensure_topics(admin, {topic: {"cleanup.policy": "shred"}}, TopicSettings())
