"""The one retry delay every client here waits: exponential with equal jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """The n-th wait (n from 1) is min(maximum, initial * 2**(n-1)): half of it fixed, half
    random, so clients that failed together do not retry together."""

    initial: float = 1.0
    maximum: float = math.inf
    jitter: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int) -> float:
        step = min(self.maximum, self.initial * 2.0 ** min(max(0, attempt - 1), 64))
        return step / 2 + self.jitter() * step / 2
