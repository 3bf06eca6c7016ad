"""What the chart's Grafana dashboard and alert rules query, for the tests that check it exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "cryptopipe-operator" / "files" / "grafana-dashboard.json"
# Our series and Spark's servlet's (spark.metrics.namespace is the app's name): the only
# prefixes the dashboard and the rules may use.
SERIES = re.compile(r"\b(cryptopipe_[a-z0-9_]+|metrics_[A-Za-z0-9_]+)\b")
# Grafana's template variables, as a query would see them with "All" selected.
VARIABLES = {"$namespace": ".*", "$symbol": ".*"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(board: dict[str, Any] | None = None) -> list[str]:
    """Every PromQL expression of the dashboard's panels and template variables' label_values
    series, with the template variables filled in."""
    board = board or dashboard()
    queries = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((.*), *\w+\)", query["query"])
            if inner:
                queries.append(inner.group(1))
    out = []
    for query in queries:
        for name, value in VARIABLES.items():
            query = query.replace(name, value)
        out.append(query)
    return out


def series_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in SERIES.findall(expr)}
