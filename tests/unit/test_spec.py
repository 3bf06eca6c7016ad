from __future__ import annotations

from typing import Any

import pytest

from cryptopipe_schemas.spec import (
    CryptoPipelineSpec,
    SourceKind,
    SpecError,
    parse_spec,
    to_mapping,
)

pytestmark = pytest.mark.unit


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return caught.value.problems


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec({"symbol": "BTCUSDT"})
    assert spec.source.kind is SourceKind.BINANCE
    assert spec.intervals == ["1m", "5m", "1h"]
    assert spec.model.horizon < spec.model.lookback
    assert not spec.sinks.sheets.enabled


def test_full_spec_round_trips_through_its_mapping() -> None:
    data = {
        "symbol": "ETHUSDT",
        "source": {
            "kind": "replay",
            "replay": {"data": "embedded", "speed": 60, "shiftToNow": True},
        },
        "intervals": ["1m", "1h"],
        "watermark": "10s",
        "sinks": {
            "sheets": {
                "enabled": True,
                "spreadsheetId": "1AbC",
                "secretRef": {"name": "sheets-key", "key": "sa.json"},
            },
            "kafka": {"partitions": 3},
        },
        "model": {"interval": "1h", "lookback": 24, "horizon": 3, "learningRate": 0.01},
        "dashboard": {"host": "btc.cryptopipe.local"},
        "suspend": True,
    }
    spec = parse_spec(data)
    assert spec.source.replay.speed == 60.0
    assert spec.sinks.sheets.secret_ref is not None
    assert spec.sinks.sheets.secret_ref.key == "sa.json"
    assert parse_spec(to_mapping(spec)) == spec


def test_every_problem_is_reported_with_its_path() -> None:
    problems = _problems(
        {
            "symbol": "btc-usdt",
            "source": {"kind": "ftx"},
            "intervals": ["1m", "soon"],
            "model": {"lookback": "many", "dropout": 2},
            "colour": "blue",
        }
    )
    text = "\n".join(problems)
    assert "symbol: 'btc-usdt' does not look right (Binance symbol" in text
    assert "source.kind: must be one of binance, replay, synthetic, not 'ftx'" in text
    assert "intervals[1]: 'soon' does not look right" in text
    assert "model.lookback: must be a whole number, not 'many'" in text
    assert "model.dropout: must be at most 0.9, not 2" in text
    assert "colour: unknown field" in text


def test_symbol_is_required() -> None:
    assert _problems({}) == [
        "symbol: is required (Binance symbol in upper case, for example BTCUSDT)"
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"intervals": ["1m", "1m", "1h"]},
            "intervals: each interval may appear once; repeated: 1m",
        ),
        ({"intervals": ["1m"]}, "model.interval: 1h is not aggregated"),
        (
            {"model": {"lookback": 6, "horizon": 6}},
            "model.horizon: 6 must be smaller than model.lookback",
        ),
        (
            {"sinks": {"sheets": {"enabled": True}}},
            "an enabled Sheets sink needs spreadsheetId and secretRef",
        ),
        ({"suspend": "yes"}, "suspend: must be true or false"),
        (
            {"retention": {"candles": "1d"}},
            "retention.candles: 1d keeps fewer than lookback + horizon (54) candles of 1h",
        ),
        (
            {"retention": {"trades": "30m"}},
            "retention.trades: '30m' does not look right (How long Kafka keeps the trades "
            "topic (12h, 7d or forever)",
        ),
        (
            {"sinks": {"kafka": {"partitions": True}}},
            "sinks.kafka.partitions: must be a whole number",
        ),
    ],
)
def test_rules_a_schema_alone_cannot_say(data: dict[str, Any], message: str) -> None:
    problems = _problems({"symbol": "BTCUSDT", **data})
    assert any(message in problem for problem in problems), problems


def test_default_lists_are_not_shared() -> None:
    first, second = CryptoPipelineSpec(symbol="BTCUSDT"), CryptoPipelineSpec(symbol="ETHUSDT")
    first.intervals.append("1d")
    assert second.intervals == ["1m", "5m", "1h"]


def test_strings_and_lists_have_the_crds_bounds() -> None:
    long_path = "/" + "x" * 300
    problems = _problems({"symbol": "BTCUSDT", "sinks": {"hdfs": {"path": long_path}}})
    assert problems == ["sinks.hdfs.path: is longer than 253 characters"]
    many = [f"{minutes}m" for minutes in range(1, 18)]
    problems = _problems({"symbol": "BTCUSDT", "intervals": [*many, "1h"]})
    assert "intervals: has more than 16 items" in problems


def test_component_resources_default_field_by_field() -> None:
    defaults = parse_spec({"symbol": "BTCUSDT"}).resources
    spec = parse_spec({"symbol": "BTCUSDT", "resources": {"trainer": {"memory": "4Gi"}}})
    assert spec.resources.trainer.memory == "4Gi"
    assert spec.resources.trainer.cpu == defaults.trainer.cpu == "1"
    spec = parse_spec({"symbol": "BTCUSDT", "resources": {"aggregator": {"cpu": "2"}}})
    assert spec.resources.aggregator.memory == defaults.aggregator.memory == "1Gi"
    assert spec.resources.producer == defaults.producer
