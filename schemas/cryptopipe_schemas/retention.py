"""What Kafka keeps of each kind of a pipeline's topics, from its spec's `retention`: one answer
for the operator's KafkaTopics (Strimzi) and for the topics the jobs create themselves
(external Kafka)."""

from __future__ import annotations

from typing import Literal

from cryptopipe_schemas.durations import parse_retention
from cryptopipe_schemas.spec import CryptoPipelineSpec

TopicKind = Literal["trades", "candles", "forecasts"]


def retention_ms(spec: CryptoPipelineSpec, kind: TopicKind) -> int:
    """Kafka's retention.ms of the pipeline's topics of one kind; -1 keeps them forever."""
    text: str = getattr(spec.retention, kind)
    return parse_retention(text)


def topic_config(spec: CryptoPipelineSpec, kind: TopicKind) -> dict[str, int | str]:
    """The topic-level configs cryptopipe sets: deletion by age, never compaction (a candle's
    key is its symbol, so compaction would keep one candle per symbol)."""
    return {"retention.ms": retention_ms(spec, kind), "cleanup.policy": "delete"}
