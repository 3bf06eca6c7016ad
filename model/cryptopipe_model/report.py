"""A markdown report of a walk-forward evaluation, with PNG plots when matplotlib is installed
(headless Agg backend): forecast vs actual with intervals, error distributions, MAE by step."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryptopipe_model.evaluate import REFERENCE, Evaluation, Metrics

PLOT_ORIGINS = 240


def _fmt(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "n/a"
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def _pyplot() -> Any | None:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def overall_table(evaluation: Evaluation) -> str:
    header = (
        "| model | MAE | RMSE | MASE | direction | direction p | DM | DM p | coverage | width |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for name, score in evaluation.scores.items():
        m: Metrics = score.overall
        rows.append(
            f"| {name} | {_fmt(m.mae, 2)} | {_fmt(m.rmse, 2)} | {_fmt(m.mase)} | "
            f"{_fmt(m.direction_accuracy, 3)} (n={m.direction_n}) | {_fmt(m.direction_p, 3)} | "
            f"{_fmt(m.dm_statistic, 2)} | {_fmt(m.dm_p, 3)} | {_fmt(m.coverage, 3)} | "
            f"{_fmt(m.mean_width, 2)} |"
        )
    return header + "\n".join(rows) + "\n"


def step_table(evaluation: Evaluation, attribute: str) -> str:
    steps = range(1, evaluation.horizon + 1)
    header = "| model | " + " | ".join(f"t+{k}" for k in steps) + " |\n"
    header += "|---|" + "---:|" * evaluation.horizon + "\n"
    rows = [
        f"| {name} | "
        + " | ".join(_fmt(float(getattr(m, attribute))) for m in score.per_step)
        + " |"
        for name, score in evaluation.scores.items()
    ]
    return header + "\n".join(rows) + "\n"


def markdown(
    evaluation: Evaluation,
    *,
    title: str,
    notes: Sequence[str] = (),
    plots: Sequence[str] = (),
) -> str:
    test_origins = sum(len(f.origins) for f in evaluation.folds)
    parts = [
        f"# {title}\n",
        *[f"{note}\n" for note in notes],
        f"Walk-forward: {len(evaluation.folds)} folds, {test_origins} forecast origins, "
        f"horizon {evaluation.horizon}, nominal interval coverage {evaluation.coverage:.2f}. "
        f"MASE is MAE relative to {REFERENCE} on the same origins (below 1 beats it); DM is "
        f"the Diebold-Mariano statistic on squared errors vs {REFERENCE} (HLN-corrected; "
        "negative means smaller errors); direction p is a two-sided binomial test vs 50%.\n",
        "## Overall\n",
        overall_table(evaluation),
        "## MASE by horizon step\n",
        step_table(evaluation, "mase"),
        "## Diebold-Mariano p-value by horizon step\n",
        step_table(evaluation, "dm_p"),
        "## Interval coverage by horizon step\n",
        step_table(evaluation, "coverage"),
    ]
    if plots:
        parts.append("## Plots\n")
        parts.extend(f"![{Path(p).stem}]({p})\n" for p in plots)
    else:
        parts.append("Plots skipped: matplotlib is not installed.\n")
    return "\n".join(parts)


def _plot_forecast(plt: Any, evaluation: Evaluation, model: str, path: Path) -> None:
    run = evaluation.runs[model]
    shown = slice(max(0, len(run.origin) - PLOT_ORIGINS), len(run.origin))
    figure, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for axis, step in zip(axes, (0, evaluation.horizon - 1), strict=True):
        x = run.origin[shown] + step + 1
        axis.plot(x, run.actual[shown, step], color="black", linewidth=1, label="actual")
        axis.plot(x, run.forecast.point[shown, step], color="tab:blue", label=f"{model}")
        axis.fill_between(
            x,
            run.forecast.lower[shown, step],
            run.forecast.upper[shown, step],
            color="tab:blue",
            alpha=0.2,
            label=f"{evaluation.coverage:.0%} interval",
        )
        axis.set_title(f"{model}: forecast t+{step + 1} vs actual (last {PLOT_ORIGINS} origins)")
        axis.set_ylabel("price")
        axis.legend(loc="upper left")
    axes[-1].set_xlabel("candle index")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_errors(plt: Any, evaluation: Evaluation, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(9, 5))
    step = evaluation.horizon - 1
    for name, run in evaluation.runs.items():
        errors = 100 * (run.actual[:, step] - run.forecast.point[:, step]) / run.last_close
        axis.hist(errors, bins=80, histtype="step", label=name)
    axis.set_title(f"Error distribution at t+{step + 1} (% of origin close)")
    axis.set_xlabel("actual - forecast, %")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_by_horizon(plt: Any, evaluation: Evaluation, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(9, 5))
    steps = np.arange(1, evaluation.horizon + 1)
    for name, score in evaluation.scores.items():
        axis.plot(steps, [m.mae for m in score.per_step], marker="o", label=name)
    axis.set_title("MAE by horizon step")
    axis.set_xlabel("steps ahead")
    axis.set_ylabel("MAE (price)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(
    evaluation: Evaluation,
    folder: Path,
    *,
    title: str = "Forecast evaluation",
    model: str = "lstm",
    notes: Sequence[str] = (),
) -> Path:
    """Write report.md (and PNGs if matplotlib is available) into folder; return report.md."""
    folder.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    plots: list[str] = []
    if plt is not None:
        shown = model if model in evaluation.runs else REFERENCE
        _plot_forecast(plt, evaluation, shown, folder / "forecast_vs_actual.png")
        _plot_errors(plt, evaluation, folder / "error_distribution.png")
        _plot_by_horizon(plt, evaluation, folder / "error_by_horizon.png")
        plots = ["forecast_vs_actual.png", "error_distribution.png", "error_by_horizon.png"]
    path = folder / "report.md"
    path.write_text(markdown(evaluation, title=title, notes=notes, plots=plots))
    return path
