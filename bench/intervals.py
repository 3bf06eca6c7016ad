"""Price intervals scaled by past volatility (EWMA) or by forecast volatility (HAR-RV), on the
bundled real hourly BTC/USD candles (issue 28, part 2).

Same origins as bench/model.py's walk-forward (cryptopipe-train's defaults: 3,000 origins in 5
folds, expanding window), the same nominal coverage and horizon (ModelSpec defaults). For each
baseline point forecaster, both scales are calibrated on each fold's training rows only and
scored on its test origins: coverage (target: within 3 points of nominal), mean width, and the
mean interval (Winkler) score, with the HAR/EWMA ratio measured in this run (below 1: HAR is
better). Writes bench/results/intervals.json.

    uv run python bench/intervals.py [--test-size N] [--folds K]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

from cryptopipe_jobs.train.sources import read_embedded
from cryptopipe_model.baselines import BaselinePredictor, make_baseline
from cryptopipe_model.evaluate import make_folds
from cryptopipe_model.interval_scale import EWMA, HAR, compare, winkler_dm
from cryptopipe_schemas.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "intervals.json"
POINT_FORECASTERS = ("persistence", "ar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--test-size", type=int, default=3000)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    spec = ModelSpec()
    frame = read_embedded()
    folds = make_folds(
        len(frame), horizon=spec.horizon, test_size=args.test_size, n_folds=args.folds
    )
    print(f"data: {len(frame)} hourly candles; {len(folds)} folds; spec {spec}", flush=True)
    began = time.perf_counter()
    results: dict[str, object] = {}
    for name in POINT_FORECASTERS:
        model = make_baseline(name, spec.horizon, spec.coverage)
        predictors = []
        for fold in folds:
            fitted = model.fit(frame.iloc[fold.train_start : fold.train_stop])
            assert isinstance(fitted, BaselinePredictor)
            predictors.append(fitted)
        scores = {s.method: s for s in compare(frame, folds, predictors, spec.coverage)}
        for score in scores.values():
            print(
                f"{name:12s} {score.method:5s} coverage {score.coverage:.3f} "
                f"(nominal {spec.coverage}) width {score.mean_width:9.2f} "
                f"winkler {score.winkler:9.2f}",
                flush=True,
            )
        ratio = scores[HAR].winkler / scores[EWMA].winkler
        dm = winkler_dm(scores[HAR], scores[EWMA], spec.horizon)
        print(
            f"{name:12s} winkler har/ewma {ratio:.4f}, Diebold-Mariano "
            f"{dm.statistic:+.2f} (p {dm.p_value:.3g})",
            flush=True,
        )
        results[name] = {
            "scores": [s.summary() for s in scores.values()],
            "winkler_har_over_ewma": ratio,
            "dm_har_vs_ewma": {"statistic": dm.statistic, "p": dm.p_value},
            "coverage_minus_nominal": {m: s.coverage - spec.coverage for m, s in scores.items()},
        }
    elapsed = time.perf_counter() - began
    out = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.system()}",
        "data_rows": len(frame),
        "test_origins": args.test_size,
        "folds": args.folds,
        "horizon": spec.horizon,
        "coverage": spec.coverage,
        "elapsed_s": elapsed,
        "point_forecasters": results,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{elapsed:.1f} s; wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
