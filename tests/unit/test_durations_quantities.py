"""The one parser of durations and the one of Kubernetes quantities (cryptopipe_schemas)."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import pytest

from cryptopipe_schemas import topics
from cryptopipe_schemas.durations import (
    RETENTION_PATTERN,
    parse_duration,
    parse_interval,
    parse_retention,
)
from cryptopipe_schemas.quantities import QUANTITY_PATTERN, parse_quantity
from cryptopipe_schemas.spec import DURATION_PATTERN

pytestmark = pytest.mark.unit

SAMPLES = ["500ms", "30s", "1m", "15m", "1h", "1d", "0s", "1w", "ms", "1.5m", "01m", "1M", "", "1"]


def test_durations_in_milliseconds() -> None:
    assert [parse_duration(t) for t in ("500ms", "30s", "1m", "5m", "1h", "1d")] == [
        500,
        30_000,
        60_000,
        300_000,
        3_600_000,
        86_400_000,
    ]
    with pytest.raises(ValueError, match="'0s' is not a duration such as 500ms"):
        parse_duration("0s")


@pytest.mark.parametrize(
    ("text", "millis"),
    [("1m", 60_000), ("15m", 900_000), ("1h", 3_600_000), ("1d", 86_400_000), ("30s", 30_000)],
)
def test_intervals_in_milliseconds(text: str, millis: int) -> None:
    assert parse_interval(text) == millis


@pytest.mark.parametrize("text", ["1w", "500ms", "0m", "1m\n"])
def test_bad_intervals_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="is not an interval such as 1m, 5m or 1h"):
        parse_interval(text)


@pytest.mark.parametrize("text", SAMPLES)
def test_the_spec_patterns_accept_what_the_parser_reads(text: str) -> None:
    def parses(parse: Callable[[str], int], value: str) -> bool:
        try:
            parse(value)
        except ValueError:
            return False
        return True

    watermark = bool(re.match(DURATION_PATTERN, text))
    assert watermark == (parses(parse_duration, text) and not text.endswith("d"))
    assert bool(topics.INTERVAL_PATTERN.match(text)) == parses(parse_interval, text)
    assert bool(re.match(RETENTION_PATTERN, text)) == parses(parse_retention, text)


def test_retention_in_kafkas_milliseconds() -> None:
    assert [parse_retention(t) for t in ("1h", "12h", "7d", "forever")] == [
        3_600_000,
        43_200_000,
        604_800_000,
        -1,
    ]
    assert re.match(RETENTION_PATTERN, "forever")
    with pytest.raises(ValueError, match="'30m' is not a retention such as 12h, 7d or forever"):
        parse_retention("30m")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", Decimal("0.25")),
        ("1", Decimal(1)),
        ("1.5", Decimal("1.5")),
        ("2k", Decimal(2000)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1Gi", Decimal(1024 * 2**20)),
        ("-1Ki", Decimal(-1024)),
        ("1E", Decimal(10**18)),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1.Gi", "1gi", "1 Gi", "1e3", "1Gi\n"])
def test_bad_quantities_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="is not a quantity such as 250m"):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["250m", "1", "1.5", "512Mi", "2Gi", "1T", "1Pi", "-1", "x"])
def test_what_a_spec_may_request_is_a_quantity(text: str) -> None:
    if re.match(QUANTITY_PATTERN, text):
        assert parse_quantity(text) >= 0
