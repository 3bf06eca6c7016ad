"""The producer's transactional id and how Kafka's refusals are told to a person."""

from __future__ import annotations

from kafka.errors import InvalidProducerEpochError, NotLeaderForPartitionError, ProducerFencedError

from cryptopipe_jobs.producer.transactions import (
    DeliveryError,
    FencedError,
    describe,
    transactional_id,
)


def test_one_transactional_id_per_source_and_set_of_symbols() -> None:
    assert transactional_id("binance", ["ETHUSDT", "BTCUSDT"]) == transactional_id(
        "binance", ["btcusdt", "ethusdt"]
    )
    assert transactional_id("binance", ["BTCUSDT"]) == "cryptopipe-producer.binance.btcusdt"
    assert transactional_id("replay", ["BTCUSDT"]) != transactional_id("binance", ["BTCUSDT"])
    assert transactional_id("binance", ["BTCUSDT"]) != transactional_id(
        "binance", ["BTCUSDT", "ETHUSDT"]
    )


def test_a_fenced_commit_or_send_is_named_as_a_takeover() -> None:
    for error in (ProducerFencedError(), InvalidProducerEpochError()):
        described = describe(error, "cryptopipe-producer.binance.btcusdt")
        assert isinstance(described, FencedError)
        assert "another producer took over" in str(described)
        assert "cryptopipe-producer.binance.btcusdt" in str(described)


def test_other_refusals_stay_delivery_errors_with_the_cause() -> None:
    described = describe(NotLeaderForPartitionError(), "x")
    assert type(described) is DeliveryError
    assert "NotLeaderForPartition" in str(described)
