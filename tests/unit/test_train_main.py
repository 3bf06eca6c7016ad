"""cryptopipe-train end to end on a small slice of the real BTC/USD data, into a tmp registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryptopipe_jobs.train import sources
from cryptopipe_jobs.train.main import EXIT_CONFIG, EXIT_DATA, main
from cryptopipe_model.baselines import BASELINE_NAMES
from cryptopipe_model.registry import LocalStorage, Registry

pytestmark = pytest.mark.unit

TINY_MODEL = {
    "interval": "1h",
    "lookback": 8,
    "horizon": 3,
    "layers": 1,
    "units": 4,
    "epochs": 1,
    "batchSize": 64,
    "coverage": 0.8,
}
RUN = ["--rows", "400", "--test-size", "60", "--folds", "2"]


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"symbol": "BTCUSDT", "model": TINY_MODEL}))
    return path


def test_trains_evaluates_reports_and_registers(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_dir, report_dir = tmp_path / "registry", tmp_path / "report"
    args = ["--spec", str(spec_file), "--candles", "embedded", "--registry", str(registry_dir)]
    result = tmp_path / "result.json"
    assert main([*args, "--report-dir", str(report_dir), "--result-file", str(result), *RUN]) == 0
    out, err = capsys.readouterr()
    for stage in range(1, 7):
        assert f"[{stage}/6]" in err
    registry = Registry(LocalStorage(registry_dir))
    assert registry.versions() == ["v0001"]
    record = registry.record("v0001")
    assert record.data_range.rows == 400
    embedded = sources.read_embedded()
    assert record.data_range.end == embedded["window_start"].iloc[-1].isoformat()
    models = record.metrics["models"]
    assert set(models) == {*BASELINE_NAMES, "lstm"}
    assert record.metrics["test_origins"] == 60
    assert f"version v0001: {'promoted' if record.promoted else 'kept as a candidate'}" in out
    assert "| lstm | " in out and f"{record.mase:.4f}" in out
    assert (record.mase is not None and record.mase < 1) == record.promoted
    assert (registry.current() is not None) == record.promoted
    outcome = json.loads(result.read_text())
    assert outcome["version"] == "v0001" and outcome["promoted"] == record.promoted
    assert outcome["mase"] == record.mase and outcome["reason"] == record.reason
    assert json.loads(registry.storage.read("versions/v0001/spec.json"))["lookback"] == 8
    report = (report_dir / "report.md").read_text()
    assert "| lstm |" in report and (report_dir / "forecast_vs_actual.png").stat().st_size > 0
    assert registry.storage.read("versions/v0001/extra/report.md").decode() == report
    # The registered version forecasts.
    predictor = registry.load("v0001")
    forecast = predictor.predict_latest(embedded.iloc[-100:].reset_index(drop=True))
    assert forecast.point.shape == (1, 3)
    assert (forecast.lower <= forecast.point).all() and (forecast.point <= forecast.upper).all()
    # A second run is a new version.
    assert main([*args, *RUN]) == 0
    assert registry.versions() == ["v0001", "v0002"]


def write_candles(path: Path, rows: int, damage: str) -> None:
    frame = sources.read_embedded().iloc[:rows].copy()
    if damage == "nan":
        frame.loc[frame.index[200], "close"] = np.nan
    elif damage == "gap":
        frame = frame.drop(frame.index[[150, 151]])
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("rows", "damage", "message"),
    [
        (400, "nan", "1 rows with missing values"),
        (400, "gap", "1 gaps: consecutive windows are not 0 days 01:00:00 apart"),
        (120, "none", "too few rows: 120 candles"),
    ],
)
def test_bad_candles_exit_with_a_clear_message(
    spec_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: int,
    damage: str,
    message: str,
) -> None:
    candles = tmp_path / "candles.csv"
    write_candles(candles, rows, damage)
    registry_dir = tmp_path / "registry"
    args = ["--spec", str(spec_file), "--candles", str(candles), "--registry", str(registry_dir)]
    code = main([*args, "--test-size", "60", "--folds", "2"])
    assert code == EXIT_DATA
    err = capsys.readouterr().err
    assert f"cryptopipe-train: unusable candles: {message}" in err
    assert not registry_dir.exists()


def test_a_minute_model_on_hourly_data_is_refused_as_gaps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({"symbol": "BTCUSDT", "model": {**TINY_MODEL, "interval": "1m"}})
    )
    args = ["--spec", str(spec), "--candles", "embedded", "--registry", str(tmp_path / "r")]
    assert main([*args, *RUN]) == EXIT_DATA
    assert "gaps: consecutive windows are not 0 days 00:01:00 apart" in capsys.readouterr().err


def test_invalid_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"symbol": "BTCUSDT", "model": {"lookback": 1}}))
    args = ["--spec", str(spec), "--candles", "embedded", "--registry", str(tmp_path / "r")]
    assert main(args) == EXIT_CONFIG
    assert "model.lookback" in capsys.readouterr().err
