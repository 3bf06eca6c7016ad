"""What a reader returns: the data, or what went wrong in words (never a stack trace)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class Read(Generic[T]):
    value: T | None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def attempt(source: str, read: Callable[[], T], explain: Callable[[Exception], str]) -> Read[T]:
    try:
        return Read(read())
    except Exception as error:
        return Read(None, Problem(source, explain(error)))
