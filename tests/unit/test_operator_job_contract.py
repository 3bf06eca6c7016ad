"""The arguments the operator's builders give each container are ones its program accepts.

The builders and the entry points are written apart; this holds them together without a
cluster: every builder's argument list goes through the real argument parser of the job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from cryptopipe_jobs.aggregate import main as aggregate_main
from cryptopipe_jobs.predict import main as predict_main
from cryptopipe_jobs.producer import main as producer_main
from cryptopipe_jobs.train import main as train_main
from cryptopipe_operator.children import aggregator, predictor, producer, training
from operator_support import CONFIG, pipeline

pytestmark = pytest.mark.unit

Builder = Callable[..., list[str]]
Parser = Callable[[Sequence[str] | None], Any]

CONTRACTS: list[tuple[str, Builder, Parser]] = [
    ("producer", producer.args, producer_main.build_parser().parse_args),
    ("aggregator", aggregator.args, aggregate_main.build_parser().parse_args),
    ("training", training.args, train_main.build_parser().parse_args),
    ("predictor", predictor.args, predict_main.build_parser().parse_args),
]


@pytest.mark.parametrize(("name", "build", "parse"), CONTRACTS, ids=[c[0] for c in CONTRACTS])
def test_the_program_accepts_what_the_operator_passes(
    name: str, build: Builder, parse: Parser
) -> None:
    argv = build(pipeline({"sinks": {"hdfs": {"path": "/cryptopipe"}}}), CONFIG)
    try:
        parsed = parse(argv)
    except SystemExit as error:
        pytest.fail(f"{name}: the program refuses the operator's arguments {argv} ({error})")
    assert parsed.spec


def test_the_spark_application_leaves_the_master_to_spark_submit() -> None:
    parsed = aggregate_main.build_parser().parse_args(aggregator.args(pipeline(), CONFIG))
    assert parsed.master == "submit"
