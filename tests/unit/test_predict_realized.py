"""Realized one-step errors: a forecast is judged once, by the candle it targeted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cryptopipe_jobs.predict.realized import PendingForecasts, RealizedError

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_the_target_candle_realizes_the_forecast_once() -> None:
    pending = PendingForecasts()
    pending.expect(T0 + HOUR, point=101.0, origin_close=100.0)
    assert pending.realize(T0 + HOUR, close=103.0) == RealizedError(served=2.0, persistence=3.0)
    assert pending.realize(T0 + HOUR, close=103.0) is None
    assert len(pending) == 0


def test_a_forecast_whose_target_never_came_is_dropped_by_a_later_candle() -> None:
    pending = PendingForecasts()
    pending.expect(T0 + HOUR, point=1.0, origin_close=1.0)
    pending.expect(T0 + 3 * HOUR, point=5.0, origin_close=4.0)
    assert pending.realize(T0 + 2 * HOUR, close=2.0) is None  # a gap: T0+1h never closed
    assert len(pending) == 1
    assert pending.realize(T0 + 3 * HOUR, close=4.5) == RealizedError(0.5, 0.5)
