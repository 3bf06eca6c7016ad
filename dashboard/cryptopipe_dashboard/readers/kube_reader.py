"""CryptoPipelines and their conditions from the Kubernetes API (cluster mode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptopipe_dashboard.readers.outcome import Read, attempt
from cryptopipe_schemas.crd import PLURAL
from cryptopipe_schemas.spec import API_GROUP, API_VERSION


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    symbol: str
    phase: str
    conditions: list[dict[str, Any]]
    model: str | None
    last_forecast: str | None


def pipeline_status(resource: dict[str, Any]) -> PipelineStatus:
    status = resource.get("status") or {}
    return PipelineStatus(
        name=resource["metadata"]["name"],
        symbol=resource.get("spec", {}).get("symbol", "?"),
        phase=status.get("phase", "Pending"),
        conditions=list(status.get("conditions") or []),
        model=(status.get("model") or {}).get("version")
        if isinstance(status.get("model"), dict)
        else status.get("model"),
        last_forecast=status.get("lastForecastTime"),
    )


def _list(namespace: str) -> list[PipelineStatus]:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()
    listed = api.list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, _request_timeout=5
    )
    items: list[dict[str, Any]] = dict(listed).get("items", [])  # type: ignore[call-overload]
    return [pipeline_status(item) for item in items]


def explain(error: Exception) -> str:
    status = getattr(error, "status", None)
    if status == 403:
        return "the dashboard's ServiceAccount may not list CryptoPipelines here (403)."
    if status == 404:
        return "the CryptoPipeline CRD is not installed in this cluster (404)."
    return (
        f"the Kubernetes API cannot be reached ({type(error).__name__}); showing local data only."
    )


def read_pipelines(namespace: str) -> Read[list[PipelineStatus]]:
    return attempt(f"Kubernetes ({namespace})", lambda: _list(namespace), explain)
