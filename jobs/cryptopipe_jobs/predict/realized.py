"""Realized one-step errors of the served forecasts and of persistence, as candles close.

Each served one-step forecast waits for its target candle; when that candle closes, the
absolute errors of the forecast and of persistence (the origin's close) are counted. The ratio
of their sums over a window is the realized MASE (`cryptopipe_predictor_realized_abs_error_total`
by forecaster): the dashboard's ratio from the topics, at one step ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class RealizedError:
    served: float
    persistence: float


@dataclass
class PendingForecasts:
    # target window end -> (served point, persistence point)
    _waiting: dict[datetime, tuple[float, float]] = field(default_factory=dict)

    def expect(self, target_end: datetime, point: float, origin_close: float) -> None:
        self._waiting[target_end] = (point, origin_close)

    def realize(self, window_end: datetime, close: float) -> RealizedError | None:
        """The errors of the forecast for the candle that just closed, if one was made; forecasts
        for earlier targets (their candle never came, say after a gap) are dropped."""
        for stale in [t for t in self._waiting if t < window_end]:
            del self._waiting[stale]
        made = self._waiting.pop(window_end, None)
        if made is None:
            return None
        point, persistence = made
        return RealizedError(abs(close - point), abs(close - persistence))

    def __len__(self) -> int:
        return len(self._waiting)
