"""The Streamlit dashboard: Deployment, Service, and an Ingress when a host is given."""

from __future__ import annotations

from typing import Any

from cryptopipe_operator.children import training
from cryptopipe_operator.children.common import (
    DASHBOARD_PORT,
    Pipeline,
    container,
    deployment,
    digest,
    metadata,
    pod_template,
    selector,
)
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_schemas.spec import SourceKind

COMPONENT = "dashboard"
APP = "/opt/cryptopipe/dashboard/app.py"


def name(pipeline: Pipeline) -> str:
    return pipeline.child(COMPONENT)


def args(pipeline: Pipeline, config: PlatformConfig) -> list[str]:
    """`streamlit run APP` with its server flags, then (after `--`) the dashboard's own flags
    (cryptopipe_dashboard.config.parse): the pipeline's Kafka, symbol, intervals and registry,
    and, given the dashboards' ServiceAccount, its namespace, whose CryptoPipelines the
    Pipelines page lists."""
    spec = pipeline.spec
    return [
        "run", APP,
        "--server.address=0.0.0.0",
        f"--server.port={DASHBOARD_PORT}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",  # no Deploy button or developer menu for viewers
        "--",
        "--kafka-bootstrap", config.kafka.bootstrap_servers,
        "--symbols", spec.symbol,
        "--intervals", ",".join(spec.intervals),
        *(["--synthetic-symbols", spec.symbol] if spec.source.kind is SourceKind.SYNTHETIC else []),
        "--registry", training.registry_web_location(pipeline, config),
        *(["--namespace", pipeline.namespace] if config.dashboard.service_account else []),
    ]  # fmt: skip


def build(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    spec = pipeline.spec
    main = container(
        COMPONENT, config.images.dashboard, args(pipeline, config), spec.resources.dashboard, config
    )
    main["command"] = ["streamlit"]
    main["ports"] = [{"name": "http", "containerPort": DASHBOARD_PORT}]
    main["readinessProbe"] = {"httpGet": {"path": "/_stcore/health", "port": "http"}}
    main["livenessProbe"] = {
        "httpGet": {"path": "/_stcore/health", "port": "http"},
        "periodSeconds": 20,
    }
    template = pod_template(
        pipeline,
        COMPONENT,
        [main],
        config,
        digest(spec.symbol, spec.intervals, spec.model.interval, spec.dashboard, spec.source.kind),
    )
    if config.dashboard.service_account:
        template["spec"]["serviceAccountName"] = config.dashboard.service_account
    return deployment(pipeline, name(pipeline), COMPONENT, template)


def build_service(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(pipeline, name(pipeline), COMPONENT),
        "spec": {
            "selector": selector(pipeline, COMPONENT),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_ingress(pipeline: Pipeline, config: PlatformConfig) -> dict[str, Any] | None:
    host = pipeline.spec.dashboard.host
    if not host:
        return None
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": name(pipeline), "port": {"name": "http"}}
                            },
                        }
                    ]
                },
            }
        ]
    }
    if config.ingress_class:
        spec["ingressClassName"] = config.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(pipeline, name(pipeline), COMPONENT),
        "spec": spec,
    }
