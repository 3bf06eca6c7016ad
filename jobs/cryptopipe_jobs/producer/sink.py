"""Where a trade source hands its output: the Kafka publisher in production, memory in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cryptopipe_schemas.records import TradeRecord


class TradeSink(Protocol):
    def publish_trade(self, record: TradeRecord) -> None: ...

    def publish_dead_letter(
        self, raw: bytes, reason: str, *, stream: str | None, event_time_ms: int | None
    ) -> None: ...


@dataclass(frozen=True)
class DeadLetterEntry:
    raw: bytes
    reason: str
    stream: str | None
    event_time_ms: int | None


@dataclass
class MemorySink:
    """Keeps everything published, in order; for tests."""

    trades: list[TradeRecord] = field(default_factory=list)
    dead_letters: list[DeadLetterEntry] = field(default_factory=list)

    def publish_trade(self, record: TradeRecord) -> None:
        self.trades.append(record)

    def publish_dead_letter(
        self, raw: bytes, reason: str, *, stream: str | None, event_time_ms: int | None
    ) -> None:
        self.dead_letters.append(DeadLetterEntry(raw, reason, stream, event_time_ms))

    def trade_ids(self, symbol: str) -> list[int]:
        return [int(r["trade_id"]) for r in self.trades if r["symbol"] == symbol]
