"""The Kafka security settings every client takes from its environment."""

from __future__ import annotations

import pytest

from cryptopipe_operator.kafka_access import Grant, Role, Scope, grants, user_name
from cryptopipe_schemas.kafka_auth import KafkaAuthError, from_env

pytestmark = pytest.mark.unit

SCRAM = {
    "CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "CRYPTOPIPE_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "CRYPTOPIPE_KAFKA_USERNAME": "cryptopipe.team.default.producer",
    "CRYPTOPIPE_KAFKA_PASSWORD": 'p"a\\ss',
    "CRYPTOPIPE_KAFKA_CA_FILE": "/etc/cryptopipe/kafka/ca.crt",
}


def test_nothing_set_is_plaintext_and_says_so() -> None:
    auth = from_env({})
    assert auth.kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert auth.spark_options() == {"kafka.security.protocol": "PLAINTEXT"}
    assert auth.describe() == "PLAINTEXT: unauthenticated and unencrypted"


def test_scram_over_tls_reaches_kafka_python_and_spark_alike() -> None:
    auth = from_env(SCRAM)
    assert auth.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cryptopipe.team.default.producer",
        "sasl_plain_password": 'p"a\\ss',
        "ssl_cafile": "/etc/cryptopipe/kafka/ca.crt",
    }
    options = auth.spark_options()
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="cryptopipe.team.default.producer" password="p\\"a\\\\ss";'
    )
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert 'p"a' not in auth.describe() and "as cryptopipe.team.default.producer" in auth.describe()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRYPTOPIPE_KAFKA_SECURITY_PROTOCOL": "SASL"}, "one of PLAINTEXT, SSL"),
        (
            {**SCRAM, "CRYPTOPIPE_KAFKA_PASSWORD": ""},
            "SASL_SSL needs CRYPTOPIPE_KAFKA_PASSWORD",
        ),
        (
            {**SCRAM, "CRYPTOPIPE_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "SASL_MECHANISM is 'GSSAPI'; one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
    ],
    ids=["unknown protocol", "no password", "unknown mechanism"],
)
def test_incomplete_or_unknown_settings_never_fall_back_to_plaintext(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(KafkaAuthError, match=message):
        from_env(env)


SCOPE = Scope(
    symbols=("BTCUSDT", "ETHUSDT"),
    intervals=("1m", "1h"),
    model_intervals=("1h",),
    source="binance",
    transactional_id="cryptopipe-producer.pool.team.majors",
    predictor_group="cryptopipe-predict.pool.team.majors",
)


def names(role: Role, operation: str) -> set[str]:
    return {g.name for g in grants(role, SCOPE) if g.operation == operation}


def test_each_role_gets_its_own_topics_only() -> None:
    assert names(Role.PRODUCER, "WRITE") == {
        "trades.btcusdt", "trades.ethusdt", "deadletter.binance",
        "cryptopipe-producer.pool.team.majors",
    }  # fmt: skip
    assert names(Role.AGGREGATOR, "READ") == {
        "trades.btcusdt",
        "trades.ethusdt",
        "spark-kafka-source-",
    }
    assert names(Role.AGGREGATOR, "WRITE") == {
        f"candles.{i}.{s}" for i in ("1m", "1h") for s in ("btcusdt", "ethusdt")
    }
    assert names(Role.PREDICTOR, "READ") == {
        "candles.1h.btcusdt", "candles.1h.ethusdt", "cryptopipe-predict.pool.team.majors",
    }  # fmt: skip
    assert names(Role.PREDICTOR, "WRITE") == {"forecasts.btcusdt", "forecasts.ethusdt"}
    # It creates a missing candles topic to subscribe early, but may not change its configs.
    assert names(Role.PREDICTOR, "CREATE") == {
        "candles.1h.btcusdt", "candles.1h.ethusdt", "forecasts.btcusdt", "forecasts.ethusdt",
    }  # fmt: skip
    assert names(Role.PREDICTOR, "ALTER_CONFIGS") == {"forecasts.btcusdt", "forecasts.ethusdt"}
    assert names(Role.DASHBOARD, "WRITE") == set()
    assert {g.operation for g in grants(Role.DASHBOARD, SCOPE)} == {"READ", "DESCRIBE"}
    assert Grant("GROUP", "spark-kafka-source-", "READ", prefixed=True) in grants(
        Role.AGGREGATOR, SCOPE
    )


def test_one_user_per_role_and_owner() -> None:
    assert user_name(Role.PREDICTOR, "team", "majors") == "cryptopipe.team.majors.predictor"
