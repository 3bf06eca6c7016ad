"""Dashboard configuration: a YAML file and/or flags, with the in-cluster defaults the operator's
dashboard Deployment passes (`--config /etc/cryptopipe/dashboard.yaml`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from cryptopipe_schemas.flags import entry_parser


@dataclass(frozen=True)
class DashboardConfig:
    kafka_bootstrap: str = "kafka-kafka-bootstrap:9092"
    # A Confluent-compatible registry whose ids the topics carry; None: our derived ids.
    schema_registry_url: str | None = None
    symbols: tuple[str, ...] = ("BTCUSDT",)
    # Symbols whose trades are a random walk (source kind synthetic): never shown as market data.
    synthetic_symbols: tuple[str, ...] = ()
    intervals: tuple[str, ...] = ("1m", "5m", "1h")
    registry: str | None = None  # a local folder, or an http(s) WebHDFS URL ending in the folder
    # Per symbol, where its registry is when symbols have their own (a pool's dashboard);
    # a symbol not named here reads `registry`.
    registries: dict[str, str] = field(default_factory=dict)
    namespace: str | None = None  # where CryptoPipelines live; None: local mode, no Kubernetes
    refresh_seconds: float = 5.0
    candle_limit: int = 300
    stale_after_seconds: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)


def _coerce(name: str, value: Any) -> Any:
    if name in {"symbols", "intervals", "synthetic_symbols"}:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(item.strip() for item in items if item.strip())
    if name == "registries" and isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(
                f"registries: SYMBOL=LOCATION pairs separated by commas, not {value!r}"
            )
        return {symbol.strip(): location.strip() for symbol, location in pairs}
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


_DEFAULTS = DashboardConfig()
FLAG_HELP = {
    "kafka_bootstrap": f"Kafka bootstrap servers (default: {_DEFAULTS.kafka_bootstrap})",
    "schema_registry_url": "Confluent-compatible schema registry the topics' ids come from",
    "symbols": f"comma-separated symbols (default: {','.join(_DEFAULTS.symbols)})",
    "intervals": f"comma-separated candle intervals (default: {','.join(_DEFAULTS.intervals)})",
    "synthetic_symbols": "comma-separated symbols whose trades are synthetic (labelled so)",
    "registry": "model registry: a local folder, or a WebHDFS URL ending in the folder",
    "registries": "per symbol: SYMBOL=LOCATION,... (a pool's pipelines each have their own)",
    "namespace": "where CryptoPipelines live (default: none, local mode without Kubernetes)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(
        __package__,
        "cryptopipe-dashboard",
        "The Streamlit dashboard's flags (after `streamlit run app.py --`).",
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file of these settings, read first; flags win"
    )
    for name, text in FLAG_HELP.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=text)
    parser.add_argument(
        "--refresh-seconds",
        dest="refresh_seconds",
        type=float,
        help=f"seconds between refreshes (default: {_DEFAULTS.refresh_seconds})",
    )
    return parser


def parse(argv: Sequence[str]) -> DashboardConfig:
    """Flags after `streamlit run app.py --`; a `--config FILE` is read first, flags win."""
    args = build_parser().parse_args(list(argv))
    config = DashboardConfig()
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text()) or {}
        config = from_mapping(loaded, config)
    flags = {key: value for key, value in vars(args).items() if key != "config"}
    return from_mapping(flags, config)


def registry_of(config: DashboardConfig, symbol: str) -> str | None:
    return config.registries.get(symbol, config.registry)
