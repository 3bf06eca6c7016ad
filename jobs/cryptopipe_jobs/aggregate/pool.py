"""A pool's pipelines as streaming queries: which query serves which symbols, and what it reads.

Pure. One driver serves every pipeline of a pool. Pipelines that agree on intervals and watermark
share one query (its state layout depends on nothing else), so a pool usually runs one query;
each query has its own checkpoint under the driver's checkpoint root, named by those settings.
The sinks are the pool's: every member must agree on them.

Membership changes restart a query from its checkpoint with a new subscription, and Spark reads
a topic that is new to the subscription from its earliest offset, so a symbol added later gets
every candle while the others resume where they were. Three facts about Spark 4.1.1's Kafka
source, measured on the test bed, decide the rest:
- a subscribed topic that does not exist fails the query (UnknownTopicOrPartitionException):
  a member whose trades topic is not there yet waits, `pending`, until it is;
- a topic dropped from the subscription of a checkpoint fails the query as lost data
  ("Some data may have been lost") with failOnDataLoss on: so a subscription only grows while
  its topics exist. A symbol that leaves stays subscribed (its candles are no longer written)
  for as long as its topic exists;
- a topic that no longer exists has to leave the subscription: that restart reads one batch with
  failOnDataLoss off (the loss is the deleted topic's, and deliberate), then goes back to strict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptopipe_schemas import topics
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, to_mapping


def group_key(spec: CryptoPipelineSpec) -> str:
    """The name of the query (and its checkpoint folder) that serves `spec`'s symbol: a digest
    of what its state layout depends on, the intervals (as a set) and the watermark."""
    settings = {"intervals": sorted(spec.intervals), "watermark": spec.watermark}
    text = json.dumps(settings, sort_keys=True)
    return "q-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class QueryGroup:
    key: str
    specs: tuple[CryptoPipelineSpec, ...]  # sorted by symbol

    @property
    def settings(self) -> CryptoPipelineSpec:
        """The member whose intervals and watermark the query uses (all members agree)."""
        return self.specs[0]

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(spec.symbol for spec in self.specs)


def group_specs(specs: Sequence[CryptoPipelineSpec]) -> dict[str, QueryGroup]:
    """The pool's queries, by key. Raises SpecError when members disagree on the sinks or a
    symbol appears twice (the operator keeps both from happening)."""
    check_pool(specs)
    grouped: dict[str, list[CryptoPipelineSpec]] = {}
    for spec in specs:
        grouped.setdefault(group_key(spec), []).append(spec)
    return {
        key: QueryGroup(key, tuple(sorted(members, key=lambda s: s.symbol)))
        for key, members in sorted(grouped.items())
    }


def check_pool(specs: Sequence[CryptoPipelineSpec]) -> None:
    if not specs:
        return
    problems = []
    first = min(specs, key=lambda s: s.symbol)
    for spec in specs:
        if to_mapping(spec.sinks) != to_mapping(first.sinks):
            problems.append(
                f"{spec.symbol}: sinks differ from {first.symbol}'s; a pool shares its sinks"
            )
    symbols = [spec.symbol for spec in specs]
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        problems.append(f"symbols: each symbol once per pool; repeated: {', '.join(repeated)}")
    if problems:
        raise SpecError(problems)


@dataclass(frozen=True)
class Subscription:
    topics: tuple[str, ...]  # what the query reads, sorted
    pending: tuple[str, ...]  # members' trades topics that do not exist yet
    gone: tuple[str, ...]  # topics read before that no longer exist

    @property
    def lenient(self) -> bool:
        """Whether the next start must tolerate the gone topics' offsets (one batch)."""
        return bool(self.gone)


def plan_subscription(
    symbols: Iterable[str], recorded: Iterable[str], existing: Iterable[str]
) -> Subscription:
    """The topics a query reads: its members' trades topics and every topic it read before,
    as far as they exist. `recorded` is what the query's checkpoint has read so far."""
    present = set(existing)
    wanted = {topics.trades(symbol) for symbol in symbols}
    before = set(recorded)
    return Subscription(
        topics=tuple(sorted((wanted | before) & present)),
        pending=tuple(sorted(wanted - present)),
        gone=tuple(sorted(before - present)),
    )
