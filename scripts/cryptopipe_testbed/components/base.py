"""What every test bed component offers the CLI and the pytest fixtures."""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: str


class Component(abc.ABC):
    name: str
    version: str
    requires: tuple[str, ...] = ()

    @abc.abstractmethod
    def install(self) -> None:
        """Download or build into the cache; a no-op when the cache is complete."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start (after install) and return once healthy; raise StartError with log tails."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process this component started."""

    @abc.abstractmethod
    def health(self) -> Health:
        """Ask the running component whether it serves, the way a client would."""

    @abc.abstractmethod
    def address(self) -> str:
        """Where clients reach it."""

    @abc.abstractmethod
    def env(self) -> dict[str, str]:
        """Variables that tests, benchmarks and the README use to reach it."""
