"""cryptopipe-train: read candles, check them, evaluate the LSTM beside every baseline by
walk-forward, train the version to serve on all candles, write the report, register the version
and apply the promotion gate (walk-forward MASE < 1 against persistence).

Exit codes: 0 trained and registered (promoted or kept as a candidate, the output says which);
2 invalid configuration; 3 unusable candles (too few rows, gaps, NaNs); 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryptopipe_jobs.cli import INVALID_CONFIGURATION, refuse
from cryptopipe_jobs.storage.hdfs_storage import hdfs_path, webhdfs_client
from cryptopipe_jobs.storage.locate import is_hdfs, open_storage
from cryptopipe_jobs.train import sources
from cryptopipe_jobs.train.committed import CommittedCandles, wait_for_rows
from cryptopipe_jobs.train.plan import required_rows
from cryptopipe_model.baselines import all_baselines
from cryptopipe_model.evaluate import Evaluation, walk_forward
from cryptopipe_model.features import CandleDataError, check_candles
from cryptopipe_model.forecast import Model
from cryptopipe_model.lstm import LstmModel
from cryptopipe_model.registry import DataRange, Registry, VersionRecord
from cryptopipe_model.report import overall_table, write_report
from cryptopipe_schemas import logs
from cryptopipe_schemas.durations import parse_interval
from cryptopipe_schemas.flags import add_log_level, entry_parser
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, load_spec_file

PROG = "cryptopipe-train"
STAGES = 6
EXIT_FAILED, EXIT_DATA = 1, 3
EXIT_CONFIG = INVALID_CONFIGURATION

Say = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    spec: CryptoPipelineSpec
    candles: str
    registry: str
    webhdfs_url: str | None = None
    report_dir: Path | None = None
    rows: int | None = None
    test_size: int = 3000
    folds: int = 5
    train_size: int | None = None
    seed: int = 0
    keras_verbose: int = 2
    result_file: Path | None = None
    wait_for_data: float = 0  # seconds to wait for enough committed candles on HDFS


def result_json(record: VersionRecord) -> str:
    """The outcome for the operator (the pod's termination message; operator status.py)."""
    return json.dumps(
        {
            "version": record.version,
            "promoted": record.promoted,
            "reason": record.reason,
            "mase": record.mase,
            "baselineMase": record.best_baseline_mase,
            "bestBaseline": record.best_baseline,
        }
    )


def read_candles(options: TrainOptions) -> pd.DataFrame:
    if options.candles == sources.EMBEDDED:
        frame = sources.read_embedded()
    elif is_hdfs(options.candles):
        if not options.webhdfs_url:
            raise ValueError(f"{options.candles} is on HDFS: give --webhdfs-url")
        client = webhdfs_client(options.webhdfs_url)
        frame = sources.read_hdfs_parquet_folder(client, hdfs_path(options.candles))
    else:
        frame = sources.read_local(Path(options.candles))
    if options.rows is not None:
        frame = frame.iloc[-options.rows :].reset_index(drop=True)
    return frame


def check(frame: pd.DataFrame, options: TrainOptions, model: LstmModel) -> None:
    """CandleDataError unless the candles can feed a whole run."""
    check_candles(frame, pd.Timedelta(parse_interval(options.spec.model.interval), unit="ms"))
    needed = required_rows(options.spec.model, options.test_size, model.validation_fraction)
    if len(frame) < needed:
        raise CandleDataError(
            f"too few rows: {len(frame)} candles, a run with lookback "
            f"{options.spec.model.lookback}, horizon {options.spec.model.horizon} and "
            f"{options.test_size} test origins needs at least {needed}"
        )


def report_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def evaluate(frame: pd.DataFrame, options: TrainOptions, lstm: LstmModel, say: Say) -> Evaluation:
    spec = options.spec.model
    models: list[Model] = [*all_baselines(spec.horizon, spec.coverage), lstm]
    return walk_forward(
        frame,
        models,
        horizon=spec.horizon,
        coverage=spec.coverage,
        test_size=options.test_size,
        n_folds=options.folds,
        train_size=options.train_size,
        progress=lambda text: say(f"  walk-forward {text}"),
    )


def train(options: TrainOptions, say: Say) -> VersionRecord:
    """The whole run; returns the registered version's record."""
    started = time.monotonic()
    spec = options.spec.model
    lstm = LstmModel(spec, seed=options.seed, verbose=options.keras_verbose)
    if options.wait_for_data > 0 and is_hdfs(options.candles) and options.webhdfs_url:
        needed = required_rows(spec, options.test_size, lstm.validation_fraction)
        committed = CommittedCandles(
            webhdfs_client(options.webhdfs_url), hdfs_path(options.candles)
        )
        wait_for_rows(committed, needed, options.wait_for_data, say)
    say(f"[1/{STAGES}] reading candles from {options.candles}")
    frame = read_candles(options)
    say(f"[2/{STAGES}] checking {len(frame)} candles (interval {spec.interval})")
    check(frame, options, lstm)
    data_range = DataRange.of(frame)
    say(f"  {data_range.rows} rows from {data_range.start} to {data_range.end}")
    say(f"[3/{STAGES}] walk-forward: {options.folds} folds, {options.test_size} test origins")
    evaluation = evaluate(frame, options, lstm, say)
    say(f"[4/{STAGES}] training the version to serve on all {len(frame)} candles")
    predictor = lstm.fit(frame)
    info = predictor.info
    loss = info.best_validation_loss
    say(f"  {info.epochs_run} epochs, best {info.best_epoch}, validation loss {loss:.4f}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = options.report_dir or Path(scratch)
        say(f"[5/{STAGES}] writing the report to {folder}")
        write_report(
            evaluation,
            folder,
            title=f"{options.spec.symbol} {spec.interval}: LSTM against baselines",
            notes=[
                f"Data: {data_range.rows} candles, {data_range.start} to {data_range.end}.",
                f"Final model: {info.epochs_run} epochs (best {info.best_epoch}), "
                f"{info.train_windows} training and {info.validation_windows} validation windows.",
            ],
        )
        extra = report_files(folder)
    say(f"[6/{STAGES}] registering the version in {options.registry}")
    registry = Registry(open_storage(options.registry, options.webhdfs_url))
    record = registry.register(predictor, evaluation, data_range, extra=extra)
    print(overall_table(evaluation))
    state = "promoted to current" if record.promoted else "kept as a candidate"
    print(f"version {record.version}: {state}; {record.reason}")
    choice = registry.serving_choice()
    print(f"serving: {choice.kind} {choice.name} ({choice.reason})")
    pruned = registry.prune(options.spec.retention.model_versions)
    if pruned:
        print(f"deleted older versions (retention.modelVersions): {', '.join(pruned)}")
    if options.result_file is not None:
        options.result_file.write_text(result_json(record))
    say(f"done in {time.monotonic() - started:.1f} s")
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, PROG, __doc__)
    parser.add_argument("--spec", required=True, help="CryptoPipeline spec or manifest")
    add_log_level(parser)
    parser.add_argument(
        "--candles",
        help="'embedded' (bundled hourly BTC/USD), a local parquet folder or file, a candle CSV, "
        "a Binance kline file, or an hdfs:// folder (default: the aggregator's HDFS folder for "
        "the spec's symbol and interval, with --webhdfs-url)",
    )
    parser.add_argument("--registry", required=True, help="local folder or hdfs:// path")
    parser.add_argument("--webhdfs-url", help="NameNode WebHDFS address, e.g. http://nn:9870")
    parser.add_argument("--hdfs-url", help="default file system, e.g. hdfs://nn:8020")
    parser.add_argument("--result-file", type=Path, help="write the outcome here as JSON")
    parser.add_argument("--report-dir", type=Path, help="also keep the report here")
    parser.add_argument(
        "--rows", type=int, help="use only the last N candles (default: spec.model.history)"
    )
    parser.add_argument(
        "--test-size", type=int, help="walk-forward origins (default: spec.model.testSize)"
    )
    parser.add_argument("--folds", type=int, help="default: spec.model.folds")
    parser.add_argument("--train-size", type=int, help="rolling training window (rows)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the training")
    parser.add_argument(
        "--wait-for-data",
        type=float,
        default=0,
        metavar="SECONDS",
        help="with HDFS candles: first wait up to this long until enough are committed "
        "(a pipeline's first training starts with its aggregator)",
    )
    return parser


def options_from(args: argparse.Namespace) -> TrainOptions:
    spec = load_spec_file(args.spec)
    candles = args.candles
    if candles is None:
        if not args.webhdfs_url:
            raise SpecError(["--candles: give a source, or --webhdfs-url to read from HDFS"])
        candles = sources.default_candles(spec, args.hdfs_url)
    rows = args.rows if args.rows is not None else (spec.model.history or None)
    test_size = args.test_size if args.test_size is not None else spec.model.test_size
    folds = args.folds if args.folds is not None else spec.model.folds
    for name in ("rows", "test_size", "folds", "train_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpecError([f"--{name.replace('_', '-')}: must be at least 1, not {value}"])
    return TrainOptions(
        spec=spec,
        candles=candles,
        registry=args.registry,
        webhdfs_url=args.webhdfs_url,
        report_dir=args.report_dir,
        rows=rows,
        test_size=test_size,
        folds=folds,
        train_size=args.train_size,
        seed=args.seed,
        keras_verbose=1 if sys.stderr.isatty() else 2,
        result_file=args.result_file,
        wait_for_data=args.wait_for_data,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    say = logging.getLogger("cryptopipe_jobs.train").info

    try:
        options = options_from(args)
    except (SpecError, OSError) as error:
        return refuse(PROG, error)
    try:
        train(options, say)
    except CandleDataError as error:
        print(f"{PROG}: unusable candles: {error}", file=sys.stderr)
        return EXIT_DATA
    except Exception as error:  # the message, not a traceback, is what an operator reads
        print(f"{PROG}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
