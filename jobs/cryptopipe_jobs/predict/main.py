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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from cryptopipe_jobs.cli import refuse, stop_on_signals
from cryptopipe_jobs.http_metrics import serve
from cryptopipe_jobs.kafka_io import TopicSettings, create_producer, ensure_topics, log_ensured
from cryptopipe_jobs.ports import ensure_free
from cryptopipe_jobs.predict.hdfs_sink import HdfsForecastSink
from cryptopipe_jobs.predict.history import Added, CandleHistory
from cryptopipe_jobs.predict.members import Member, read_members, static_members
from cryptopipe_jobs.predict.metrics import PredictorMetrics
from cryptopipe_jobs.predict.realized import PendingForecasts
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
from cryptopipe_schemas.kafka_auth import client_config, current
from cryptopipe_schemas.registry import RegistryError, SchemaIds, registered_ids
from cryptopipe_schemas.retention import topic_config
from cryptopipe_schemas.spec import CryptoPipelineSpec, ModelSpec, SpecError, load_spec_file

PROG = "cryptopipe-predict"
log = logging.getLogger("cryptopipe.predict")


@dataclass(frozen=True)
class PredictOptions:
    members: tuple[Member, ...]  # the --spec's (with --registry); more come from spec_dir
    bootstrap_servers: str
    webhdfs_url: str | None = None
    group_id: str | None = None
    history: int = 500
    backfill: int = 0
    poll_seconds: float = 30.0
    schema_registry_url: str | None = None
    metrics_port: int = 0
    spec_dir: Path | None = None  # a pool's members, read again every poll_seconds
    registry_root: str = ""  # where spec_dir members' registries are (schemas.storage)

    @property
    def group(self) -> str:
        if self.group_id:
            return self.group_id
        return f"cryptopipe-predict-{'-'.join(m.symbol.lower() for m in self.members)}"

    def current_members(self) -> list[Member]:
        found = {m.symbol: m for m in self.members}
        if self.spec_dir is not None:
            for member in read_members(self.spec_dir, self.registry_root):
                found.setdefault(member.symbol, member)
        return [found[symbol] for symbol in sorted(found)]


def refresh(
    registry: Registry,
    served: Served | None,
    model: ModelSpec,
    symbol: str,
    failed: Callable[[], None] = lambda: None,
) -> Served:
    """The serving choice now; the one in hand if unchanged or if the registry cannot be read
    (then `failed` is called)."""
    try:
        choice = registry.serving_choice()
        if served is not None and served.same_choice(choice):
            return served
        fresh = load(registry, choice, model)
    except Exception as error:  # a registry that cannot be read must not stop forecasting
        failed()
        log.warning("registry unreadable, serving unchanged: %s", error, extra={"symbol": symbol})
        if served is not None:
            return served
        fresh = load(
            registry,
            ServingChoice("baseline", "persistence", f"registry unreadable: {error}"),
            model,
        )
    log.info(
        "serving", extra={"symbol": symbol, "model": fresh.label, "reason": fresh.choice.reason}
    )
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
    """One symbol's candles in, its Forecast records out: the history, the serving choice (from
    its own registry, reloaded every poll) and the records."""

    def __init__(
        self,
        member: Member,
        registry: Registry,
        metrics: PredictorMetrics,
        options: PredictOptions,
    ) -> None:
        self.member = member
        self.registry = registry
        self.metrics = metrics
        self.options = options
        model = member.spec.model
        self.interval_name = model.interval
        self.step = dt.timedelta(milliseconds=parse_interval(model.interval))
        self.history = CandleHistory(member.symbol, pd.Timedelta(self.step), options.history)
        self.served = refresh(registry, None, model, member.symbol, metrics.registry_read_failed)
        metrics.serving(self.served.label, self.served.choice.kind, reload=False)
        self.pending = PendingForecasts()
        self._quality_of = ""  # the newest version the streak was counted at ("-": none yet)
        self._track_quality()
        self.history.capacity = max(options.history, self.served.min_history())
        self._polled = time.monotonic()

    def maybe_refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._polled >= self.options.poll_seconds:
            served = refresh(
                self.registry,
                self.served,
                self.member.spec.model,
                self.member.symbol,
                self.metrics.registry_read_failed,
            )
            self._track_quality()
            if served is not self.served:
                self.metrics.serving(served.label, served.choice.kind, reload=True)
            self.served = served
            self.history.capacity = max(self.options.history, self.served.min_history())
            self._polled = time.monotonic()

    def _track_quality(self) -> None:
        """Versions in a row below their baseline, counted again only when a training lands."""
        try:
            versions = self.registry.versions()
            newest = versions[-1] if versions else "-"
            if newest != self._quality_of:
                self.metrics.versions_below_baseline(self.registry.below_baseline_streak())
                self._quality_of = newest
        except Exception as error:  # as in refresh: the registry's state never stops forecasts
            self.metrics.registry_read_failed()
            log.warning("registry unreadable: %s", error, extra={"symbol": self.member.symbol})

    def on_candle(self, record: dict[str, Any], forecast: bool) -> list[dict[str, Any]]:
        self.metrics.candle_consumed()
        added = self.history.add(record, self.interval_name)
        if added is Added.DUPLICATE:
            self.metrics.duplicate_dropped()
        if added is not Added.NEWEST or not forecast:
            if added in (Added.DUPLICATE, Added.NOT_FINAL, Added.OTHER_STREAM):
                log.debug("candle skipped: %s", added.value)
            return []
        realized = self.pending.realize(record["window_end"], float(record["close"]))
        if realized is not None:
            self.metrics.realized(realized.served, realized.persistence)
        served = self.served
        began = time.perf_counter()
        result = forecast_latest(served, self.history.contiguous_frame())
        if result is None:
            log.info(
                "waiting for history",
                extra={
                    "symbol": self.member.symbol,
                    "rows": len(self.history.contiguous_frame()),
                    "model": served.label,
                },
            )
            return []
        self.metrics.inference(time.perf_counter() - began)
        records = forecast_records(
            result,
            symbol=self.member.symbol,
            interval=self.interval_name,
            step=self.step,
            made_at=record["window_end"],
            coverage=served.coverage,
            model=served.label,
            event_time=record["event_time"],
            now=dt.datetime.now(dt.UTC),
        )
        first = records[0]
        self.pending.expect(first["target_time"], first["point"], float(record["close"]))
        return records


@dataclass
class Serving:
    """One member as the loop serves it: where its candles come from and its forecasts go."""

    member: Member
    forecaster: Forecaster
    candles_topic: str
    forecasts_topic: str
    key: bytes
    sink: HdfsForecastSink | None


def run(options: PredictOptions, stop: threading.Event) -> None:
    log.info("kafka security", extra={"kafka_security": current().describe()})
    metrics = PredictorMetrics()
    ready = threading.Event()
    # Up before Kafka and the model, so liveness probes see a process that is starting.
    server = serve(metrics, options.metrics_port, ready.is_set) if options.metrics_port else None
    try:
        _serve_forecasts(options, metrics, ready, stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


class PredictorLoop:
    """The members' forecasters over one consumer and one producer. Members join and leave
    between polls: a joining member's candle partitions are added to the assignment (and warmed
    up like a start), a leaving member's are dropped; the others keep their positions."""

    def __init__(
        self,
        options: PredictOptions,
        metrics: PredictorMetrics,
        consumer: KafkaConsumer,
        schema_ids: SchemaIds,
        stop: threading.Event,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.consumer = consumer
        self.schema_ids = schema_ids
        self.stop = stop
        self.serving: dict[str, Serving] = {}  # by symbol
        self.by_topic: dict[str, Serving] = {}
        self.resume: dict[TopicPartition, int] = {}
        self._sinks: dict[str, HdfsForecastSink] = {}

    def sync(self, members: Sequence[Member]) -> None:
        wanted = {m.symbol: m for m in members}
        left = [s for s in self.serving if s not in wanted or self.serving[s].member != wanted[s]]
        for symbol in left:
            gone = self.serving.pop(symbol)
            log.info("member left", extra={"symbol": symbol})
            del self.by_topic[gone.candles_topic]
        joined = [m for s, m in wanted.items() if s not in self.serving]
        if not joined and not left:
            return
        _ensure_member_topics(self.options.bootstrap_servers, joined)
        for member in joined:
            self.serving[member.symbol] = self._serving(member)
            self.by_topic[self.serving[member.symbol].candles_topic] = self.serving[member.symbol]
            log.info("member joined", extra={"symbol": member.symbol})
        self._assign([self.serving[m.symbol] for m in joined])

    def _serving(self, member: Member) -> Serving:
        registry = Registry(open_storage(member.registry, self.options.webhdfs_url))
        forecaster = Forecaster(member, registry, self.metrics.of(member.symbol), self.options)
        spec = member.spec
        return Serving(
            member,
            forecaster,
            topics.candles(spec.model.interval, spec.symbol),
            topics.forecasts(spec.symbol),
            encode_key(spec.symbol, id_override=self.schema_ids.of(SchemaName.SYMBOL_KEY)),
            self._sink(spec),
        )

    def _sink(self, spec: CryptoPipelineSpec) -> HdfsForecastSink | None:
        if not (spec.sinks.hdfs.enabled and self.options.webhdfs_url):
            return None
        path = spec.sinks.hdfs.path
        if path not in self._sinks:
            self._sinks[path] = HdfsForecastSink(webhdfs_client(self.options.webhdfs_url), path)
        return self._sinks[path]

    def _assign(self, joined: Sequence[Serving]) -> None:
        """Assign every member's partitions; only the joined ones are sought (warm-up)."""
        kept = {tp: self.consumer.position(tp) for tp in self.consumer.assignment()}
        kept = {tp: at for tp, at in kept.items() if tp.topic in self.by_topic}
        fresh = [
            TopicPartition(serving.candles_topic, p)
            for serving in joined
            for p in _partitions(self.consumer, serving.candles_topic, self.stop)
        ]
        self.consumer.assign([*kept, *fresh])
        for tp, at in kept.items():
            self.consumer.seek(tp, at)
        warm = 2 * max((s.forecaster.history.capacity for s in joined), default=0)
        if fresh:
            self.resume.update(seek_for_warmup(self.consumer, fresh, warm, self.options.backfill))

    def poll_once(self, producer: Any) -> int:
        for serving in self.serving.values():
            serving.forecaster.maybe_refresh()
        batches = self.consumer.poll(timeout_ms=500, max_records=500)
        if not batches:
            return 0
        out: list[tuple[Serving, dict[str, Any]]] = []
        names_by_id = self.schema_ids.readable_ids()
        for tp, messages in batches.items():
            found = self.by_topic.get(tp.topic)
            if found is None:
                continue  # a member that left while its records were in flight
            for message in messages:
                try:
                    decoded = decode(message.value, ids=names_by_id)
                except DecodeError as error:
                    log.warning("not a candle: %s", error, extra={"offset": message.offset})
                    continue
                if decoded.schema is not SchemaName.CANDLE:
                    log.warning("not a candle: %s", decoded.schema.value)
                    continue
                forecast = message.offset >= self.resume.get(tp, 0)
                records = found.forecaster.on_candle(decoded.record, forecast)
                out.extend((found, record) for record in records)
        forecast_id = self.schema_ids.of(SchemaName.FORECAST)
        futures = [
            producer.send(
                serving.forecasts_topic,
                key=serving.key,
                value=encode(SchemaName.FORECAST, record, id_override=forecast_id),
            )
            for serving, record in out
        ]
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if Kafka refused it: no commit, redo on restart
        by_sink: dict[int, tuple[HdfsForecastSink, list[dict[str, Any]]]] = {}
        for serving, record in out:
            if serving.sink is not None:
                by_sink.setdefault(id(serving.sink), (serving.sink, []))[1].append(record)
        for sink, records in by_sink.values():
            sink.write(records)
        self.consumer.commit()
        for serving in {id(s): s for s, _ in out}.values():
            mine = [record for s, record in out if s is serving]
            newest = max(record["event_time"] for record in mine)
            serving.forecaster.metrics.forecasts_emitted(len(mine), newest.timestamp())
            log.info(
                "forecasts sent",
                extra={
                    "symbol": serving.member.symbol,
                    "records": len(mine),
                    "model": serving.forecaster.served.label,
                },
            )
        return len(out)


def _ensure_member_topics(bootstrap_servers: str, members: Sequence[Member]) -> None:
    if not members:
        return
    admin = KafkaAdminClient(**client_config(), bootstrap_servers=bootstrap_servers, client_id=PROG)
    try:
        for member in members:
            spec = member.spec
            settings = TopicSettings(spec.sinks.kafka.partitions, spec.sinks.kafka.replication)
            # The candles are the aggregator's: created here if missing (to subscribe before
            # the first candle), their configs left to it. The forecasts are this one's.
            candles = {
                topics.candles(spec.model.interval, spec.symbol): topic_config(spec, "candles")
            }
            log_ensured(log, ensure_topics(admin, candles, settings, alter_existing=False))
            forecasts = {topics.forecasts(spec.symbol): topic_config(spec, "forecasts")}
            log_ensured(log, ensure_topics(admin, forecasts, settings))
    finally:
        admin.close()


def _serve_forecasts(
    options: PredictOptions,
    metrics: PredictorMetrics,
    ready: threading.Event,
    stop: threading.Event,
) -> None:
    ids = registered_ids(options.schema_registry_url) if options.schema_registry_url else None
    consumer = KafkaConsumer(
        **client_config(),
        bootstrap_servers=options.bootstrap_servers,
        group_id=options.group,
        client_id=PROG,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = create_producer(options.bootstrap_servers, PROG)
    loop = PredictorLoop(options, metrics, consumer, ids or SchemaIds.derived(), stop)
    try:
        loop.sync(options.current_members())
        ready.set()
        log.info(
            "predictor ready",
            extra={"symbols": sorted(loop.serving), "group": options.group},
        )
        next_sync = time.monotonic() + options.poll_seconds
        while not stop.is_set():
            if options.spec_dir is not None and time.monotonic() >= next_sync:
                loop.sync(options.current_members())
                next_sync = time.monotonic() + options.poll_seconds
            loop.poll_once(producer)
    finally:
        producer.close(timeout=30)
        consumer.close(autocommit=False)
        log.info("predictor stopped", extra={"symbols": sorted(loop.serving)})


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, PROG, __doc__)
    parser.add_argument("--spec", help="CryptoPipeline spec or manifest")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", help="the --spec's registry: local folder or hdfs:// path")
    parser.add_argument(
        "--spec-dir",
        type=Path,
        help="a pool's members (rendered manifests), read again every --poll-seconds",
    )
    parser.add_argument(
        "--registry-root",
        default="",
        help="where --spec-dir members' registries are, e.g. hdfs://nn:8020 (default: local)",
    )
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
        if (args.spec is None) == (args.spec_dir is None):
            raise SpecError(["give --spec (with --registry) or --spec-dir, one of them"])
        if args.spec is not None and not args.registry:
            raise SpecError(["--registry: required with --spec"])
        members = static_members([load_spec_file(args.spec)], args.registry) if args.spec else []
        if args.history < 1 or args.poll_seconds <= 0:
            raise SpecError(["--history and --poll-seconds must be positive"])
        ensure_free(max(0, args.metrics_port), "--metrics-port")
    except (SpecError, OSError) as error:
        return refuse(PROG, error)
    options = PredictOptions(
        members=tuple(members),
        spec_dir=args.spec_dir,
        registry_root=args.registry_root,
        bootstrap_servers=args.bootstrap_servers,
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
