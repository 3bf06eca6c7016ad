"""Small network helpers the tests share."""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    """A TCP port nothing listens on at this moment (closed again: the caller's server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str, timeout: float = 10) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, keyed `name{label="value",...}` (labels in
    name order; the bare name when it has none), parsed by prometheus-client's own parser."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
