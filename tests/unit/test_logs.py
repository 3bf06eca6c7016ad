"""The one JSON log shape every process writes (cryptopipe_schemas.logs)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from cryptopipe_schemas import logs

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure() replaces the root handlers; later tests (and py4j at exit) keep theirs."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_line_is_one_object_with_the_shared_fields_and_the_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", quiet=("chatty",))
    logging.getLogger("cryptopipe.test").info(
        "reconciled %s", "btcusdt", extra={"pipeline": "btcusdt", "k8s_ref": {"name": "b"}}
    )
    logging.getLogger("chatty").info("dropped: below WARNING")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("cryptopipe.test").exception("failed")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["level"] == "INFO" and first["logger"] == "cryptopipe.test"
    assert first["message"] == "reconciled btcusdt"
    assert first["time"].endswith("+00:00") and "." in first["time"]
    assert first["pipeline"] == "btcusdt" and first["k8s_ref"] == {"name": "b"}
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc_info"]
