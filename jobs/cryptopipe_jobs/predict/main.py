"""cryptopipe-predict: finalized candles from `candles.<interval>.<symbol>` in, Forecast records
(Confluent-framed Avro, keyed by symbol) out to `forecasts.<symbol>`, and to HDFS when the spec's
HDFS sink is on and --webhdfs-url is given.

- Each new newest final candle gives one record per horizon step, naming the model version
  ("lstm-v0003") or the baseline ("persistence") that made it.
- The registry's current pointer is polled every --poll-seconds: a newly promoted version is
  served without a restart; with none promoted, the best baseline is.
- Candles are deduplicated by (symbol, interval, window_start); non-final ones are ignored.
- Consumer offsets are committed only after the forecasts they led to are acknowledged by Kafka
  (and written to HDFS). On start, the candles before the committed offset (up to twice the
  history) are read again to rebuild the history, without forecasting from them again.
- SIGTERM or SIGINT: finish the batch in hand, commit, exit 0.
- With --metrics-port, Prometheus metrics (predict/metrics.py) on /metrics, /healthz, and /readyz
  (ready once the candle partitions are assigned).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from cryptopipe_jobs.cli import refuse, stop_on_signals
from cryptopipe_jobs.http_metrics import serve
from cryptopipe_jobs.kafka_io import TopicSettings, create_producer, ensure_topics
from cryptopipe_jobs.ports import ensure_free
from cryptopipe_jobs.predict.hdfs_sink import HdfsForecastSink
from cryptopipe_jobs.predict.history import Added, CandleHistory
from cryptopipe_jobs.predict.metrics import PredictorMetrics
from cryptopipe_jobs.predict.records import forecast_records
from cryptopipe_jobs.predict.serving import Served, forecast_latest, load
from cryptopipe_jobs.storage.hdfs_storage import webhdfs_client
from cryptopipe_jobs.storage.locate import open_storage
from cryptopipe_model.registry import Registry, ServingChoice
from cryptopipe_schemas import logs, topics
from cryptopipe_schemas.avro_schemas import SchemaName
from cryptopipe_schemas.codec import DecodeError, decode, encode, encode_key
from cryptopipe_schemas.durations import parse_interval
from cryptopipe_schemas.flags import add_log_level, entry_parser
from cryptopipe_schemas.registry import RegistryError, SchemaIds, register_all
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, load_spec_file

PROG = "cryptopipe-predict"
log = logging.getLogger("cryptopipe.predict")


@dataclass(frozen=True)
class PredictOptions:
    spec: CryptoPipelineSpec
    bootstrap_servers: str
    registry: str
    webhdfs_url: str | None = None
    group_id: str | None = None
    history: int = 500
    backfill: int = 0
    poll_seconds: float = 30.0
    schema_registry_url: str | None = None
    metrics_port: int = 0

    @property
    def group(self) -> str:
        return self.group_id or f"cryptopipe-predict-{self.spec.symbol.lower()}"


def refresh(registry: Registry, served: Served | None, options: PredictOptions) -> Served:
    """The serving choice now; the one in hand if unchanged or if the registry cannot be read."""
    try:
        choice = registry.serving_choice()
        if served is not None and served.same_choice(choice):
            return served
        fresh = load(registry, choice, options.spec.model)
    except Exception as error:  # a registry that cannot be read must not stop forecasting
        log.warning("registry unreadable, serving unchanged: %s", error)
        if served is not None:
            return served
        fresh = load(
            registry,
            ServingChoice("baseline", "persistence", f"registry unreadable: {error}"),
            options.spec.model,
        )
    log.info("serving", extra={"model": fresh.label, "reason": fresh.choice.reason})
    return fresh


def _partitions(consumer: KafkaConsumer, topic: str, stop: threading.Event) -> list[int]:
    while not stop.is_set():
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        stop.wait(0.5)
    return []


def seek_for_warmup(
    consumer: KafkaConsumer, partitions: list[TopicPartition], warm: int, backfill: int = 0
) -> dict[TopicPartition, int]:
    """Seek each partition `warm` records before its resume point (the committed offset, or,
    for a new group, `backfill` records before the end); return the resume points: forecasts
    start there."""
    beginning = consumer.beginning_offsets(partitions)
    end = consumer.end_offsets(partitions)
    resume: dict[TopicPartition, int] = {}
    for tp in partitions:
        committed = consumer.committed(tp)
        resume[tp] = committed if committed is not None else max(beginning[tp], end[tp] - backfill)
        consumer.seek(tp, max(beginning[tp], resume[tp] - warm))
    return resume


class Forecaster:
    """Candles in, Forecast records out: the history, the serving choice and the records."""

    def __init__(
        self, options: PredictOptions, registry: Registry, metrics: PredictorMetrics
    ) -> None:
        self.options = options
        self.registry = registry
        self.metrics = metrics
        model = options.spec.model
        self.interval_name = model.interval
        self.step = dt.timedelta(milliseconds=parse_interval(model.interval))
        self.history = CandleHistory(options.spec.symbol, pd.Timedelta(self.step), options.history)
        self.served = refresh(registry, None, options)
        metrics.serving(self.served.label, self.served.choice.kind, reload=False)
        self.history.capacity = max(options.history, self.served.min_history())
        self._polled = time.monotonic()

    def maybe_refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._polled >= self.options.poll_seconds:
            served = refresh(self.registry, self.served, self.options)
            if served is not self.served:
                self.metrics.serving(served.label, served.choice.kind, reload=True)
            self.served = served
            self.history.capacity = max(self.options.history, self.served.min_history())
            self._polled = time.monotonic()

    def on_candle(self, record: dict[str, Any], forecast: bool) -> list[dict[str, Any]]:
        self.metrics.candle_consumed()
        added = self.history.add(record, self.interval_name)
        if added is Added.DUPLICATE:
            self.metrics.duplicate_dropped()
        if added is not Added.NEWEST or not forecast:
            if added in (Added.DUPLICATE, Added.NOT_FINAL, Added.OTHER_STREAM):
                log.debug("candle skipped: %s", added.value)
            return []
        served = self.served
        began = time.perf_counter()
        result = forecast_latest(served, self.history.contiguous_frame())
        if result is None:
            log.info(
                "waiting for history",
                extra={"rows": len(self.history.contiguous_frame()), "model": served.label},
            )
            return []
        self.metrics.inference(time.perf_counter() - began)
        return forecast_records(
            result,
            symbol=self.options.spec.symbol,
            interval=self.interval_name,
            step=self.step,
            made_at=record["window_end"],
            coverage=served.coverage,
            model=served.label,
            event_time=record["event_time"],
            now=dt.datetime.now(dt.UTC),
        )


def run(options: PredictOptions, stop: threading.Event) -> None:
    metrics = PredictorMetrics(options.spec.symbol)
    ready = threading.Event()
    # Up before Kafka and the model, so liveness probes see a process that is starting.
    server = serve(metrics, options.metrics_port, ready.is_set) if options.metrics_port else None
    try:
        _serve_forecasts(options, metrics, ready, stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _serve_forecasts(
    options: PredictOptions,
    metrics: PredictorMetrics,
    ready: threading.Event,
    stop: threading.Event,
) -> None:
    spec = options.spec
    candles_topic = topics.candles(spec.model.interval, spec.symbol)
    forecasts_topic = topics.forecasts(spec.symbol)
    ids = register_all(options.schema_registry_url) if options.schema_registry_url else None
    schema_ids = ids or SchemaIds.derived()
    admin = KafkaAdminClient(bootstrap_servers=options.bootstrap_servers, client_id=PROG)
    try:
        settings = TopicSettings(spec.sinks.kafka.partitions, spec.sinks.kafka.replication)
        created = ensure_topics(admin, [candles_topic, forecasts_topic], settings)
    finally:
        admin.close()
    if created:
        log.info("created topics", extra={"topics": created})
    registry = Registry(open_storage(options.registry, options.webhdfs_url))
    forecaster = Forecaster(options, registry, metrics)
    sink = (
        HdfsForecastSink(webhdfs_client(options.webhdfs_url), spec.sinks.hdfs.path)
        if spec.sinks.hdfs.enabled and options.webhdfs_url
        else None
    )
    consumer = KafkaConsumer(
        bootstrap_servers=options.bootstrap_servers,
        group_id=options.group,
        client_id=PROG,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = create_producer(options.bootstrap_servers, PROG)
    key = encode_key(spec.symbol, id_override=schema_ids.of(SchemaName.SYMBOL_KEY))
    names_by_id = schema_ids.names_by_id()
    try:
        partitions = [
            TopicPartition(candles_topic, p) for p in _partitions(consumer, candles_topic, stop)
        ]
        consumer.assign(partitions)
        resume = seek_for_warmup(
            consumer, partitions, 2 * forecaster.history.capacity, options.backfill
        )
        ready.set()
        log.info(
            "predictor ready",
            extra={"candles": candles_topic, "forecasts": forecasts_topic, "group": options.group},
        )
        while not stop.is_set():
            forecaster.maybe_refresh()
            batches = consumer.poll(timeout_ms=500, max_records=500)
            if not batches:
                continue
            out: list[dict[str, Any]] = []
            for tp, messages in batches.items():
                for message in messages:
                    try:
                        decoded = decode(message.value, ids=names_by_id)
                    except DecodeError as error:
                        log.warning("not a candle: %s", error, extra={"offset": message.offset})
                        continue
                    if decoded.schema is not SchemaName.CANDLE:
                        log.warning("not a candle: %s", decoded.schema.value)
                        continue
                    out.extend(forecaster.on_candle(decoded.record, message.offset >= resume[tp]))
            futures = [
                producer.send(
                    forecasts_topic,
                    key=key,
                    value=encode(
                        SchemaName.FORECAST, record, id_override=schema_ids.of(SchemaName.FORECAST)
                    ),
                )
                for record in out
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)  # raises if Kafka refused it: no commit, redo on restart
            if sink is not None and out:
                sink.write(out)
            consumer.commit()
            if out:
                newest = max(record["event_time"] for record in out)
                metrics.forecasts_emitted(len(out), newest.timestamp())
                log.info(
                    "forecasts sent",
                    extra={"records": len(out), "model": forecaster.served.label},
                )
    finally:
        producer.close(timeout=30)
        consumer.close(autocommit=False)
        log.info("predictor stopped", extra={"symbol": spec.symbol})


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, PROG, __doc__)
    parser.add_argument("--spec", required=True, help="CryptoPipeline spec or manifest")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", required=True, help="local folder or hdfs:// path")
    parser.add_argument(
        "--webhdfs-url",
        help="NameNode WebHDFS address, e.g. http://nn:9870: needed for an hdfs:// registry and "
        "for appending forecasts to HDFS",
    )
    parser.add_argument("--hdfs-url", help="default file system, e.g. hdfs://nn:8020 (unused)")
    parser.add_argument("--group-id", help="consumer group (default cryptopipe-predict-<symbol>)")
    parser.add_argument("--history", type=int, default=500, help="candles kept (at least)")
    parser.add_argument(
        "--backfill",
        type=int,
        default=0,
        help="a new consumer group also forecasts from this many of the newest candles "
        "(default 0: only from candles that arrive after it starts)",
    )
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="registry poll period")
    parser.add_argument("--schema-registry-url", help="use the ids of this schema registry")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="Prometheus metrics port (0: no endpoint)"
    )
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, quiet=("kafka",))
    try:
        spec = load_spec_file(args.spec)
        if args.history < 1 or args.poll_seconds <= 0:
            raise SpecError(["--history and --poll-seconds must be positive"])
        ensure_free(max(0, args.metrics_port), "--metrics-port")
    except (SpecError, OSError) as error:
        return refuse(PROG, error)
    options = PredictOptions(
        spec=spec,
        bootstrap_servers=args.bootstrap_servers,
        registry=args.registry,
        webhdfs_url=args.webhdfs_url,
        group_id=args.group_id,
        history=args.history,
        backfill=max(0, args.backfill),
        poll_seconds=args.poll_seconds,
        schema_registry_url=args.schema_registry_url,
        metrics_port=max(0, args.metrics_port),
    )
    stop = stop_on_signals()
    try:
        run(options, stop)
    except (RegistryError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
