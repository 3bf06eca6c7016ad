"""The Streamlit dashboard: Deployment, Service, and an Ingress when a host is given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptopipe_operator.children import training
from cryptopipe_operator.children.common import (
    DASHBOARD_PORT,
    Owner,
    Pipeline,
    Pool,
    container,
    deployment,
    digest,
    kafka_client,
    metadata,
    pod_template,
    schema_registry_args,
    scratch_mount,
    selector,
    spec_mount,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.durations import parse_interval
from cryptopipe_schemas.spec import ComponentResources, SourceKind

COMPONENT = "dashboard"
APP = "/opt/cryptopipe/dashboard/app.py"


def name(pipeline: Pipeline) -> str:
    return pipeline.child(COMPONENT)


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    """`streamlit run APP` with its server flags, then (after `--`) the dashboard's own flags
    (cryptopipe_dashboard.config.parse): the pipeline's Kafka, symbol, intervals and registry,
    and, given the dashboards' ServiceAccount, its namespace, whose CryptoPipelines the
    Pipelines page lists."""
    return dashboard_args(
        [pipeline], config, ["--registry", training.registry_web_location(pipeline, config)]
    )


def dashboard_args(
    shown: Sequence[Pipeline], config: PlatformConfig, registry: list[str]
) -> list[str]:
    """The dashboard of one pipeline, or of a pool's (`shown` are the pipelines it lists)."""
    symbols = [p.spec.symbol for p in shown]
    intervals = sorted({i for p in shown for i in p.spec.intervals}, key=parse_interval)
    synthetic = [p.spec.symbol for p in shown if p.spec.source.kind is SourceKind.SYNTHETIC]
    return [
        "run", APP,
        "--server.address=0.0.0.0",
        f"--server.port={DASHBOARD_PORT}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",  # no Deploy button or developer menu for viewers
        "--",
        "--kafka-bootstrap", config.kafka.bootstrap_servers,
        *schema_registry_args(config),
        "--symbols", ",".join(symbols),
        "--intervals", ",".join(intervals),
        *(["--synthetic-symbols", ",".join(synthetic)] if synthetic else []),
        *registry,
        *(["--namespace", shown[0].namespace] if config.dashboard.service_account else []),
    ]  # fmt: skip


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    spec = pipeline.spec
    return deployment_of(
        pipeline,
        name(pipeline),
        args(pipeline, config),
        spec.resources.dashboard,
        digest(spec.symbol, spec.intervals, spec.model.interval, spec.dashboard, spec.source.kind),
        config,
    )


def deployment_of(
    owner: Owner,
    deployment_name: str,
    arguments: list[str],
    requests: ComponentResources,
    config_hash: str,
    config: PlatformConfig,
) -> dict[str, Any]:
    main = container(COMPONENT, config.images.dashboard, arguments, requests, config)
    main["command"] = ["streamlit"]
    main["ports"] = [{"name": "http", "containerPort": DASHBOARD_PORT}]
    main["readinessProbe"] = {"httpGet": {"path": "/_stcore/health", "port": "http"}}
    main["livenessProbe"] = {
        "httpGet": {"path": "/_stcore/health", "port": "http"},
        "periodSeconds": 20,
    }
    if isinstance(owner, Pool):
        main["volumeMounts"] = [spec_mount(owner), scratch_mount()]
    template = pod_template(
        owner, COMPONENT, [kafka_client(main, config, owner, COMPONENT)], config, config_hash
    )
    if config.dashboard.service_account:
        template["spec"]["serviceAccountName"] = config.dashboard.service_account
    return deployment(owner, deployment_name, COMPONENT, template)


def build_service(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    return service_of(pipeline, name(pipeline))


def service_of(owner: Owner, service_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, service_name, COMPONENT),
        "spec": {
            "selector": selector(owner, COMPONENT),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


@dataclass(frozen=True)
class Route:
    """A host the dashboard's Ingress answers, with the TLS Secret it serves it with."""

    host: str
    tls_secret: str | None = None


def routes(pipelines: Sequence[Pipeline]) -> list[Route]:
    """The hosts the pipelines ask for, in a stable order."""
    found = {
        Route(p.spec.dashboard.host, p.spec.dashboard.tls_secret)
        for p in pipelines
        if p.spec.dashboard.host
    }
    return sorted(found, key=lambda route: (route.host, route.tls_secret or ""))


def build_ingress(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any] | None:
    return ingress_of(pipeline, name(pipeline), routes([pipeline]), config)


def ingress_of(
    owner: Owner, service_name: str, hosts: Sequence[Route], config: PlatformConfig
) -> dict[str, Any] | None:
    """An Ingress with a rule per host to the dashboard's Service, TLS for the hosts that name a
    Secret, and the platform's annotations; none without a host."""
    if not hosts:
        return None
    backend = {"service": {"name": service_name, "port": {"name": "http"}}}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": route.host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
            }
            for route in hosts
        ]
    }
    if config.ingress_class:
        spec["ingressClassName"] = config.ingress_class
    by_secret: dict[str, list[str]] = {}
    for route in hosts:
        if route.tls_secret:
            by_secret.setdefault(route.tls_secret, []).append(route.host)
    if by_secret:
        spec["tls"] = [
            {"hosts": hosts_of, "secretName": secret}
            for secret, hosts_of in sorted(by_secret.items())
        ]
    meta = metadata(owner, service_name, COMPONENT)
    if config.dashboard.ingress_annotations:
        meta["annotations"] = dict(sorted(config.dashboard.ingress_annotations.items()))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": spec,
    }
