"""The pool's query plan: which query serves which symbols, and what each subscribes to."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptopipe_jobs.aggregate.pool import check_pool, group_key, group_specs, plan_subscription
from cryptopipe_jobs.spec_directory import read_spec_folder
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, parse_spec


def spec(symbol: str, **extra: object) -> CryptoPipelineSpec:
    return parse_spec({"symbol": symbol, **extra})


def test_members_that_agree_on_intervals_and_watermark_share_one_query() -> None:
    groups = group_specs([spec("ETHUSDT"), spec("BTCUSDT"), spec("SOLUSDT", watermark="1m")])
    assert len(groups) == 2
    shared = groups[group_key(spec("BTCUSDT"))]
    assert [s.symbol for s in shared.specs] == ["BTCUSDT", "ETHUSDT"]
    assert groups[group_key(spec("SOLUSDT", watermark="1m"))].symbols == {"SOLUSDT"}


def test_the_query_key_ignores_interval_order_and_everything_but_the_state_layout() -> None:
    one = spec("BTCUSDT", intervals=["1m", "5m"], model={"interval": "1m"})
    other = spec(
        "ETHUSDT",
        intervals=["5m", "1m"],
        model={"interval": "5m"},
        resources={"producer": {"cpu": "1"}},
    )
    assert group_key(one) == group_key(other)
    assert group_key(one) != group_key(spec("BTCUSDT", intervals=["1m"], model={"interval": "1m"}))


def test_a_pool_shares_its_sinks_and_holds_each_symbol_once() -> None:
    with pytest.raises(SpecError, match="sinks differ from BTCUSDT's"):
        check_pool([spec("BTCUSDT"), spec("ETHUSDT", sinks={"hdfs": {"path": "/elsewhere"}})])
    with pytest.raises(SpecError, match="repeated: BTCUSDT"):
        check_pool([spec("BTCUSDT"), spec("BTCUSDT", watermark="1m")])


def test_a_subscription_grows_with_members_and_keeps_what_it_read_while_it_exists() -> None:
    existing = {"trades.btcusdt", "trades.ethusdt", "trades.xrpusdt", "candles.1m.btcusdt"}
    plan = plan_subscription(
        ["BTCUSDT", "SOLUSDT"], recorded=["trades.btcusdt", "trades.ethusdt"], existing=existing
    )
    # ETH left the pool but its topic is still there: dropping it would fail the query.
    assert plan.topics == ("trades.btcusdt", "trades.ethusdt")
    assert plan.pending == ("trades.solusdt",)  # subscribing to it would fail the query too
    assert plan.gone == () and not plan.lenient


def test_a_deleted_topic_leaves_the_subscription_with_one_lenient_start() -> None:
    plan = plan_subscription(
        ["BTCUSDT"], recorded=["trades.btcusdt", "trades.ethusdt"], existing={"trades.btcusdt"}
    )
    assert plan.topics == ("trades.btcusdt",)
    assert plan.gone == ("trades.ethusdt",) and plan.lenient


def test_a_spec_folder_leaves_out_broken_files_and_configmap_internals(tmp_path: Path) -> None:
    (tmp_path / "btc.yaml").write_text("symbol: BTCUSDT\n")
    (tmp_path / "bad.yaml").write_text("symbol: btc\n")
    (tmp_path / "notes.txt").write_text("symbol: ETHUSDT\n")
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "eth.yaml").write_text("symbol: ETHUSDT\n")
    reading = read_spec_folder(tmp_path)
    assert [s.symbol for s in reading.specs] == ["BTCUSDT"]
    assert len(reading.problems) == 1 and "bad.yaml" in reading.problems[0]
    assert read_spec_folder(tmp_path / "absent").specs == ()
