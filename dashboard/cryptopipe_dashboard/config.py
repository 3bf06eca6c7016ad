"""Dashboard configuration: a YAML file and/or flags, with the in-cluster defaults the operator's
dashboard Deployment passes (`--config /etc/cryptopipe/dashboard.yaml`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class DashboardConfig:
    kafka_bootstrap: str = "kafka-kafka-bootstrap:9092"
    symbols: tuple[str, ...] = ("BTCUSDT",)
    intervals: tuple[str, ...] = ("1m", "5m", "1h")
    registry: str | None = None  # a local folder, or an http(s) WebHDFS URL ending in the folder
    namespace: str | None = None  # where CryptoPipelines live; None: local mode, no Kubernetes
    refresh_seconds: float = 5.0
    candle_limit: int = 300
    stale_after_seconds: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)


def _coerce(name: str, value: Any) -> Any:
    if name in {"symbols", "intervals"}:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(item.strip() for item in items if item.strip())
    return value


def from_mapping(data: dict[str, Any], base: DashboardConfig | None = None) -> DashboardConfig:
    known = {f.name for f in fields(DashboardConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown dashboard setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    values = {key: _coerce(key, value) for key, value in data.items() if value is not None}
    return replace(base or DashboardConfig(), **values)


def parse(argv: Sequence[str]) -> DashboardConfig:
    """Flags after `streamlit run app.py --`; a `--config FILE` is read first, flags win."""
    parser = argparse.ArgumentParser(prog="cryptopipe-dashboard")
    parser.add_argument("--config", type=Path)
    for name in ("kafka_bootstrap", "symbols", "intervals", "registry", "namespace"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name)
    parser.add_argument("--refresh-seconds", dest="refresh_seconds", type=float)
    args = parser.parse_args(list(argv))
    config = DashboardConfig()
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text()) or {}
        config = from_mapping(loaded, config)
    flags = {key: value for key, value in vars(args).items() if key != "config"}
    return from_mapping(flags, config)
