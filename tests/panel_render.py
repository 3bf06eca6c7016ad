"""The chart's Grafana dashboard drawn from a real Prometheus: each panel's queries over a time
range, plotted with matplotlib (no Grafana image can be had here). Time series as lines; stat
and table panels as their newest values in words."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from monitoring_support import VARIABLES, dashboard
from prometheus_support import Prometheus

COLUMNS = 3


def filled(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def legend(metric: dict[str, str], template: str) -> str:
    text = template
    for key, value in metric.items():
        text = text.replace("{{" + key + "}}", value)
    return text if template else ",".join(f"{k}={v}" for k, v in sorted(metric.items()))


def render(prom: Prometheus, start: float, end: float, out: Path) -> dict[str, int]:
    """Every panel of the dashboard into one PNG at `out`; how many series each panel got."""
    panels = [p for p in dashboard()["panels"] if p.get("targets")]
    rows = -(-len(panels) // COLUMNS)
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(6 * COLUMNS, 3.2 * rows), squeeze=False)
    step = max(5.0, (end - start) / 300)
    counts: dict[str, int] = {}
    for axis, panel in zip(axes.flat, panels, strict=False):
        title = panel["title"]
        results: list[tuple[str, list[Any]]] = []
        for target in panel["targets"]:
            for series in prom.query_range(filled(target["expr"]), start, end, step):
                label = legend(series["metric"], target.get("legendFormat", ""))
                results.append((label, series["values"]))
        counts[title] = len(results)
        axis.set_title(title, fontsize=10)
        if panel["type"] == "timeseries":
            for label, values in results:
                times = [dt.datetime.fromtimestamp(float(t), dt.UTC) for t, _ in values]
                axis.plot(times, [float(v) for _, v in values], label=label[:40])
            axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
            if results:
                axis.legend(fontsize=6, loc="upper left")
        else:
            axis.axis("off")
            lines = [f"{label[:60]}: {float(values[-1][1]):g}" for label, values in results]
            axis.text(0, 0.9, "\n".join(lines[:8]) or "no data", va="top", fontsize=8)
        if not results:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    began = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    figure.suptitle(f"cryptopipe dashboard from Prometheus, {began}, {end - start:.0f} s")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return counts
