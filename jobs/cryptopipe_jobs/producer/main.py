"""cryptopipe-producer: trades from Binance (live) or a recording (replay) into Kafka.

Configuration is one or more CryptoPipeline specs (files the operator renders, or manifests);
their symbols share one producer. Trades are published in Kafka transactions under one
transactional id per source and symbols: a second producer of the same trades (a replacement pod
starting beside a terminating one) fences the first. A restart reads the last committed trade per
symbol back from Kafka and continues after it, so nothing is repeated or lost. SIGTERM commits and
exits cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kafka import KafkaAdminClient

from cryptopipe_jobs.cli import refuse, stop_on_signals
from cryptopipe_jobs.http_metrics import serve
from cryptopipe_jobs.kafka_io import TopicSettings, ensure_topics, log_ensured
from cryptopipe_jobs.ports import ensure_free
from cryptopipe_jobs.producer import binance_ws, replay, synthetic
from cryptopipe_jobs.producer.kafka_sink import (
    KafkaTradeSink,
    create_transactional,
    producer_topics,
)
from cryptopipe_jobs.producer.metrics import ProducerMetrics, PrometheusEvents
from cryptopipe_jobs.producer.recorded import Kline, RecordedTrade, load_embedded, load_path
from cryptopipe_jobs.producer.resume import LastTrade, last_trades
from cryptopipe_jobs.producer.transactions import (
    DEFAULT_COMMIT_INTERVAL,
    DeliveryError,
    transactional_id,
)
from cryptopipe_jobs.spec_directory import read_spec_folder
from cryptopipe_schemas import logs
from cryptopipe_schemas.flags import add_log_level, entry_parser
from cryptopipe_schemas.kafka_auth import KafkaAuthError, client_config, current
from cryptopipe_schemas.registry import RegistryError, registered_ids
from cryptopipe_schemas.spec import CryptoPipelineSpec, SourceKind, SpecError, load_spec_file

log = logging.getLogger("cryptopipe.producer")
EMBEDDED = "embedded"


@dataclass(frozen=True)
class ProducerOptions:
    specs: Sequence[CryptoPipelineSpec]
    bootstrap_servers: str
    metrics_port: int
    binance: binance_ws.BinanceConfig
    data_override: str | None = None
    schema_registry_url: str | None = None
    # In a Deployment an exit is a crash: a finished replay stays up, metrics and probes served.
    idle_after_replay: bool = False
    transactional_id: str | None = None  # default: derived from the source and symbols
    commit_interval: float = DEFAULT_COMMIT_INTERVAL


Record = TypeVar("Record")


def replay_trades(spec: CryptoPipelineSpec, data_override: str | None) -> list[replay.ReplayTrade]:
    data = data_override or spec.source.replay.data
    tail = spec.source.replay.tail
    if data == EMBEDDED:
        # The bundled history is Coinbase's BTC/USD, replayed under the pipeline's symbol.
        return replay.klines_to_trades(newest(load_embedded(), tail), spec.symbol, "coinbase")
    loaded = load_path(Path(data))
    if loaded and isinstance(loaded[0], Kline):
        klines = [k for k in loaded if isinstance(k, Kline)]
        return replay.klines_to_trades(newest(klines, tail), spec.symbol, "binance")
    trades = [t for t in loaded if isinstance(t, RecordedTrade)]
    return replay.recorded_to_trades(newest(trades, tail), spec.symbol)


def newest(records: Sequence[Record], tail: int) -> Sequence[Record]:
    """The last `tail` records (all of them when tail is 0)."""
    return records[-tail:] if tail else records


def replay_shift_to(
    spec: CryptoPipelineSpec,
    trades: Sequence[replay.ReplayTrade],
    last: LastTrade | None,
    now: dt.datetime,
) -> dt.datetime | None:
    """Where the recording's last trade lands: now on a first run; on a restart, wherever the
    first run put it (read back from the last published trade), so times never jump."""
    if not spec.source.replay.shift_to_now or not trades:
        return None
    if last is None:
        return now
    original = next((t for t in trades if t.trade_id == last.trade_id), None)
    if original is None:
        return now
    offset_ms = replay.ms_from_utc(last.event_time) - original.time_ms
    return replay.utc_from_ms(trades[-1].time_ms + offset_ms)


def run_replay(
    spec: CryptoPipelineSpec,
    sink: KafkaTradeSink,
    metrics: ProducerMetrics,
    last: LastTrade | None,
    data_override: str | None,
    stop: threading.Event,
) -> int:
    trades = replay_trades(spec, data_override)

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def sleep(seconds: float) -> None:
        stop.wait(seconds)  # a stop request cuts the wait short

    shift_to = replay_shift_to(spec, trades, last, clock())
    published = 0
    for record in replay.replay(
        trades,
        spec.source.replay.speed,
        shift_to,
        clock,
        sleep,
        after_id=last.trade_id if last else None,
    ):
        if stop.is_set():
            break
        sink.publish_trade(record)
        # A replay compresses history: its event times are far behind ingestion by design.
        metrics.trade_in(spec.symbol, record, live=False)
        published += 1
    log.info("replay finished", extra={"symbol": spec.symbol, "published": published})
    return published


def run_synthetic(
    spec: CryptoPipelineSpec,
    sink: KafkaTradeSink,
    metrics: ProducerMetrics,
    last: LastTrade | None,
    stop: threading.Event,
) -> int:
    """Random-walk trades for one symbol until stopped, after its last published trade."""
    settings = spec.source.synthetic
    now = dt.datetime.now(dt.UTC)
    start = synthetic.first_state(settings, now)
    if last is not None and last.price is not None:
        start = synthetic.WalkState(last.trade_id, last.price, replay.ms_from_utc(last.event_time))
    published = 0
    for record in synthetic.trades(
        spec.symbol, settings, start, lambda: dt.datetime.now(dt.UTC), stop.wait
    ):
        if stop.is_set():
            break
        sink.publish_trade(record)
        metrics.trade_in(spec.symbol, record, live=True)
        published += 1
    log.info("synthetic trades stopped", extra={"symbol": spec.symbol, "published": published})
    return published


def run(options: ProducerOptions, stop: threading.Event) -> None:
    kinds = {spec.source.kind for spec in options.specs}
    if len(kinds) != 1:
        raise SpecError(["source.kind: one producer serves one source kind; split them"])
    (kind,) = kinds
    log.info("kafka security", extra={"kafka_security": current().describe()})
    symbols = [spec.symbol for spec in options.specs]
    kafka_sink = options.specs[0].sinks.kafka
    settings = TopicSettings(kafka_sink.partitions, kafka_sink.replication)
    admin = KafkaAdminClient(
        **client_config(),
        bootstrap_servers=options.bootstrap_servers,
        client_id="cryptopipe-producer",
    )
    try:
        ensured = ensure_topics(admin, producer_topics(options.specs, kind.value), settings)
    finally:
        admin.close()
    log_ensured(log, ensured)
    ids = registered_ids(options.schema_registry_url) if options.schema_registry_url else None
    transactional = options.transactional_id or transactional_id(kind.value, symbols)
    # Fence any older producer of these trades before reading where it stopped: its open
    # transaction is aborted, and nothing it sends afterwards is accepted.
    producer = create_transactional(
        options.bootstrap_servers, "cryptopipe-producer", transactional, options.commit_interval
    )
    last = last_trades(options.bootstrap_servers, symbols, ids=ids)
    log.info(
        "resuming",
        extra={
            "last_trade_ids": {s: t.trade_id for s, t in last.items()},
            "transactional_id": transactional,
        },
    )

    metrics = ProducerMetrics()
    sink = KafkaTradeSink(producer, kind.value, on_sent=metrics.sent, ids=ids)
    server = (
        serve(metrics, options.metrics_port, lambda: not sink.failed)
        if options.metrics_port
        else None
    )
    try:
        if kind is SourceKind.SYNTHETIC:
            workers = [
                threading.Thread(
                    target=run_synthetic,
                    args=(spec, sink, metrics, last.get(spec.symbol), stop),
                    name=f"synthetic-{spec.symbol}",
                )
                for spec in options.specs
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            sink.flush()
        elif kind is SourceKind.REPLAY:
            workers = [
                threading.Thread(
                    target=run_replay,
                    args=(spec, sink, metrics, last.get(spec.symbol), options.data_override, stop),
                    name=f"replay-{spec.symbol}",
                )
                for spec in options.specs
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            sink.flush()  # raises if a worker stopped on a refused record or a fence
            if options.idle_after_replay and not stop.is_set():
                log.info("replay finished; idle until stopped", extra={"symbols": symbols})
                stop.wait()
        else:
            asyncio.run(_stream(options, symbols, sink, metrics, last, stop))
    finally:
        try:
            sink.close()
        finally:
            if server is not None:
                server.shutdown()
            log.info("producer stopped", extra={"symbols": symbols})


async def _stream(
    options: ProducerOptions,
    symbols: list[str],
    sink: KafkaTradeSink,
    metrics: ProducerMetrics,
    last: dict[str, LastTrade],
    stop: threading.Event,
) -> None:
    stop_async = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(
        target=lambda: (stop.wait(), loop.call_soon_threadsafe(stop_async.set)),
        daemon=True,
        name="stop-bridge",
    ).start()
    await binance_ws.stream_trades(
        options.binance,
        symbols,
        sink,
        {symbol: trade.trade_id for symbol, trade in last.items()},
        stop_async,
        PrometheusEvents(metrics),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, "cryptopipe-producer", __doc__)
    parser.add_argument(
        "--spec",
        action="append",
        default=[],
        help="CryptoPipeline spec or manifest (repeatable)",
    )
    parser.add_argument(
        "--spec-dir",
        type=Path,
        help="a folder of specs, one per pipeline (a pool's members), read at the start",
    )
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--metrics-port", type=int, default=9108, help="0 turns the endpoint off")
    parser.add_argument(
        "--data",
        help="replay this recording instead of the spec's (Binance kline/trade CSV or zip)",
    )
    parser.add_argument(
        "--binance-ws-url", default=binance_ws.BinanceConfig.ws_url, help="Binance websocket API"
    )
    parser.add_argument(
        "--binance-rest-url", default=binance_ws.BinanceConfig.rest_url, help="Binance REST API"
    )
    parser.add_argument(
        "--schema-registry-url",
        help="register schemas there and use its ids (default: ids derived from the schemas)",
    )
    parser.add_argument(
        "--idle-after-replay",
        action="store_true",
        help="after a replay, keep serving metrics until stopped instead of exiting",
    )
    parser.add_argument(
        "--transactional-id",
        help="Kafka transactional id (default: from the source and symbols); a newer producer "
        "with the same id fences this one",
    )
    parser.add_argument(
        "--commit-interval-ms",
        type=int,
        default=int(DEFAULT_COMMIT_INTERVAL * 1000),
        help="commit the open Kafka transaction this often; trades become visible to readers then",
    )
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, quiet=("kafka",))
    try:
        specs = [load_spec_file(path) for path in args.spec]
        if args.spec_dir is not None:
            specs += read_spec_folder(args.spec_dir).specs
        if not specs:
            raise SpecError(["spec: give at least one --spec, or a --spec-dir with one in it"])
        ensure_free(args.metrics_port, "--metrics-port")
    except (SpecError, OSError) as error:
        return refuse("cryptopipe-producer", error)
    options = ProducerOptions(
        specs=specs,
        bootstrap_servers=args.bootstrap_servers,
        metrics_port=args.metrics_port,
        binance=binance_ws.BinanceConfig(
            ws_url=args.binance_ws_url, rest_url=args.binance_rest_url
        ),
        data_override=args.data,
        schema_registry_url=args.schema_registry_url,
        idle_after_replay=args.idle_after_replay,
        transactional_id=args.transactional_id,
        commit_interval=args.commit_interval_ms / 1000,
    )
    stop = stop_on_signals()
    try:
        run(options, stop)
    except SpecError as error:
        return refuse("cryptopipe-producer", error)
    except (RegistryError, DeliveryError, KafkaAuthError) as error:
        print(f"cryptopipe-producer: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
