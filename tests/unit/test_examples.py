from __future__ import annotations

from pathlib import Path

import pytest

from cryptopipe_schemas.spec import SourceKind, load_spec_file

pytestmark = pytest.mark.unit

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_the_promised_examples_exist() -> None:
    assert {path.name for path in EXAMPLES} >= {
        "btcusdt.yaml",
        "ethusdt.yaml",
        "minimal.yaml",
        "full.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_a_valid_pipeline(path: Path) -> None:
    spec = load_spec_file(str(path))
    assert spec.symbol.endswith("USDT")


def test_the_full_example_sets_every_section() -> None:
    spec = load_spec_file(str(EXAMPLES[[p.name for p in EXAMPLES].index("full.yaml")]))
    assert spec.source.kind is SourceKind.REPLAY
    assert spec.sinks.sheets.enabled and spec.sinks.sheets.secret_ref is not None
    assert spec.model.batch_size == 64
