"""The operator chart's monitoring: alert rules tested by promtool, PodMonitors and the
PrometheusRule valid against the Prometheus Operator's CRDs, and a Grafana dashboard whose
queries parse and read only series our components export.

promtool and the CRDs are the test bed's builds (scripts/cryptopipe_testbed/prometheus.py).
Spark's own series (metrics_*) are checked against a real driver's servlet in
tests/integration/test_aggregate_restart.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import OPERATOR_CHART, render_docs
from monitoring_support import ROOT, dashboard, dashboard_queries, series_names
from prometheus_client import CollectorRegistry

from cryptopipe_jobs.aggregate.progress import AggregateMetrics
from cryptopipe_jobs.predict.metrics import PredictorMetrics
from cryptopipe_jobs.producer.metrics import ProducerMetrics
from cryptopipe_operator.config import PlatformConfig
from cryptopipe_operator.metrics import Metrics
from cryptopipe_operator.platform_probe import PlatformCollector, endpoints
from cryptopipe_testbed import kubeconform, prometheus
from cryptopipe_testbed.components.kube import Kubernetes, helm_path

pytestmark = pytest.mark.unit
RULE_TESTS = ROOT / "tests" / "alerts" / "cryptopipe.test.yaml"
WITH_CRDS = (
    "--api-versions",
    "monitoring.coreos.com/v1/PodMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
)


@pytest.fixture(scope="module")
def tools() -> tuple[str, str]:
    Kubernetes().install()  # cached builds of helm, kubeconform, promtool; starts nothing
    return str(helm_path()), str(prometheus.promtool_path())


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    return render_docs(helm, *args, chart=OPERATOR_CHART)


def named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def alerts_file(docs: list[dict[str, Any]]) -> str:
    text: str = named(docs, "ConfigMap")["rel-cryptopipe-operator-alerts"]["data"]["alerts.yaml"]
    return text


def promtool(promtool_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool_bin, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_alert_passes_its_promtool_unit_tests(tools: tuple[str, str], tmp_path: Path) -> None:
    helm, promtool_bin = tools
    (tmp_path / "alerts.yaml").write_text(alerts_file(render(helm)))
    checked = promtool(promtool_bin, "check", "rules", str(tmp_path / "alerts.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = promtool(promtool_bin, "test", "rules", str(tmp_path / RULE_TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_each_alert_has_a_test_that_sees_it_fire(tools: tuple[str, str]) -> None:
    groups = yaml.safe_load(alerts_file(render(tools[0])))["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == firing, (alerts - firing, firing - alerts)
    for group in groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
            assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())


def test_a_broken_expectation_fails_promtool(tools: tuple[str, str], tmp_path: Path) -> None:
    helm, promtool_bin = tools
    (tmp_path / "alerts.yaml").write_text(alerts_file(render(helm)))
    wrong = RULE_TESTS.read_text().replace("eval_time: 13m", "eval_time: 12m", 1)
    (tmp_path / "wrong.test.yaml").write_text(wrong)
    assert promtool(promtool_bin, "test", "rules", str(tmp_path / "wrong.test.yaml")).returncode


def test_without_the_prometheus_operator_annotations_and_a_rules_config_map(
    tools: tuple[str, str],
) -> None:
    docs = render(tools[0])
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com")]
    service = named(docs, "Service")["rel-cryptopipe-operator-metrics"]
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "rel-cryptopipe-operator-grafana-dashboard" in named(docs, "ConfigMap")


def test_with_its_crds_pod_monitors_and_a_prometheus_rule_valid_against_them(
    tools: tuple[str, str],
) -> None:
    docs = render(tools[0], *WITH_CRDS)
    monitors = named(docs, "PodMonitor")
    assert set(monitors) == {"rel-cryptopipe-operator", "rel-cryptopipe-operator-pipelines"}
    pipelines = monitors["rel-cryptopipe-operator-pipelines"]["spec"]
    assert pipelines["namespaceSelector"] == {"any": True}
    assert [e["port"] for e in pipelines["podMetricsEndpoints"]] == ["metrics", "spark-ui"]
    rule = named(docs, "PrometheusRule")["rel-cryptopipe-operator"]
    assert rule["spec"]["groups"] == yaml.safe_load(alerts_file(render(tools[0])))["groups"]
    assert "rel-cryptopipe-operator-alerts" not in named(docs, "ConfigMap")

    crds = [yaml.safe_load(path.read_text()) for path in prometheus.monitoring_crd_files()]
    schemas = kubeconform.write_crd_schemas(crds, f"prometheus-operator-{len(crds)}")
    monitoring = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com")]
    result = kubeconform.validate(
        yaml.safe_dump_all(monitoring), kubeconform.builtin_schemas(), schemas, strict=True
    )
    assert result.returncode == 0 and not result.problems, (result.problems, result.stderr)
    assert result.summary.get("valid") == 3


def test_watched_namespaces_narrow_the_pipelines_pod_monitor(tools: tuple[str, str]) -> None:
    docs = render(tools[0], *WITH_CRDS, "--set", "watchNamespaces={team-a,team-b}")
    spec = named(docs, "PodMonitor")["rel-cryptopipe-operator-pipelines"]["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    off = render(tools[0], *WITH_CRDS, "--set", "monitoring.podMonitors=false")
    assert not named(off, "PodMonitor") and named(off, "PrometheusRule")


def _exported() -> set[str]:
    """Every sample name our components' registries can export (a counter `x` as `x_total`, a
    histogram as its buckets, sum and count, an info as `x_info`)."""
    registries: list[CollectorRegistry] = [
        ProducerMetrics().registry,
        AggregateMetrics().registry,
        PredictorMetrics().registry,
    ]
    operator = Metrics()
    operator.registry.register(
        PlatformCollector(endpoints(PlatformConfig()), check=lambda *_: True)
    )
    registries.append(operator.registry)
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in suffixes[family.type]
    }


def test_the_dashboard_and_the_rules_query_only_series_that_are_exported(
    tools: tuple[str, str],
) -> None:
    rules = yaml.safe_load(alerts_file(render(tools[0])))["groups"]
    expressions = [rule["expr"] for group in rules for rule in group["rules"]]
    expressions += dashboard_queries()
    ours = {name for name in series_names(expressions) if name.startswith("cryptopipe_")}
    missing = ours - _exported()
    assert not missing, f"queried but exported by nobody: {sorted(missing)}"
    assert len(ours) >= 15


def test_the_dashboards_queries_parse(tools: tuple[str, str], tmp_path: Path) -> None:
    # promtool's parser, through recording rules made of the panels' queries.
    records = [{"record": f"panel_{i}", "expr": q} for i, q in enumerate(dashboard_queries())]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": records}]}))
    checked = promtool(tools[1], "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    board = dashboard()
    assert board["uid"] == "cryptopipe-overview"
    titles = [panel["title"] for panel in board["panels"]]
    assert len(titles) == len(set(titles))
    for wanted in ("Trades published", "records behind", "batch duration", "Late trades"):
        assert any(wanted in title for title in titles), wanted
    assert any("against persistence" in title for title in titles)
