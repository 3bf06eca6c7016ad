"""cryptopipe-aggregate: trades from Kafka into finalized candles in HDFS, Hive, Kafka, Sheets.

Configuration is the CryptoPipeline spec (one or more, sharing intervals, watermark and sinks)
plus the endpoints. The query's checkpoint lives on HDFS, so a restarted driver resumes where
the last committed micro-batch ended. Runnable as a console script or by spark-submit.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from prometheus_client import start_http_server
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from cryptopipe_jobs.aggregate import pipeline, pool, trades
from cryptopipe_jobs.aggregate.progress import AggregateMetrics, ProgressListener
from cryptopipe_jobs.aggregate.queries import MemberWriter, PoolQueries, QueryFailed
from cryptopipe_jobs.cli import refuse, stop_on_signals
from cryptopipe_jobs.kafka_io import TopicSettings, ensure_topics, log_ensured
from cryptopipe_jobs.ports import ensure_free
from cryptopipe_jobs.sinks.batch_writer import BatchWriter, SinkTargets
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.sinks.hive_ddl import apply_ddl, ddl_variables
from cryptopipe_jobs.sinks.parquet import ParquetLayout
from cryptopipe_jobs.sinks.sheets import SheetsWriter
from cryptopipe_jobs.sinks.sheets_client import open_spreadsheet
from cryptopipe_jobs.sinks.sheets_outbox import Outbox, SheetsSync
from cryptopipe_jobs.spark_session import SparkSettings, create_session
from cryptopipe_jobs.spec_directory import read_spec_folder
from cryptopipe_schemas import logs, topics
from cryptopipe_schemas.flags import add_log_level, entry_parser
from cryptopipe_schemas.kafka_auth import KafkaAuthError, client_config, current
from cryptopipe_schemas.registry import RegistryError, SchemaIds, registered_ids
from cryptopipe_schemas.retention import topic_config
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, load_spec_file, to_mapping
from cryptopipe_schemas.storage import checkpoint_location, storage_base

log = logging.getLogger("cryptopipe.aggregate")


@dataclass(frozen=True)
class AggregateOptions:
    specs: Sequence[CryptoPipelineSpec]
    bootstrap_servers: str
    hdfs_url: str
    metastore_uri: str | None = None
    checkpoint: str | None = None
    sheets_credentials: str | None = None
    sheets_api_url: str | None = None
    schema_registry_url: str | None = None
    trigger_interval: str = "5 seconds"
    available_now: bool = False
    max_offsets_per_trigger: int | None = None
    master: str | None = "local[2]"
    jars: Sequence[str] = ()
    metrics_port: int = 0
    max_restarts: int = 3
    hive_ddl_dir: Path | None = None
    # The pool's member specs, read again every membership_poll_seconds (see aggregate.pool).
    spec_dir: Path | None = None
    membership_poll_seconds: float = 5.0

    # The member whose sinks are the pool's: with --spec-dir, the first member at the start.
    pool_spec: CryptoPipelineSpec | None = None

    @property
    def spec(self) -> CryptoPipelineSpec:
        """The spec whose sinks are the pool's (and whose intervals and watermark
        `start_query`'s single query uses)."""
        return self.pool_spec or self.specs[0]

    @property
    def base(self) -> str:
        return storage_base(self.hdfs_url, self.spec.sinks.hdfs.path)

    @property
    def checkpoint_location(self) -> str:
        return self.checkpoint or checkpoint_location(self.base, "aggregate")


def check_specs(specs: Sequence[CryptoPipelineSpec]) -> None:
    """A driver serves a pool: members that agree on the sinks, each symbol once."""
    if not specs:
        raise SpecError(["spec: give at least one --spec, or a --spec-dir with one in it"])
    pool.check_pool(specs)


def members(options: AggregateOptions) -> list[CryptoPipelineSpec]:
    """The pool's members now: the --spec files, plus the --spec-dir's current files. A member
    whose sinks differ from the pool's is left out, with the reason logged."""
    found = list(options.specs)
    if options.spec_dir is not None:
        found += read_spec_folder(options.spec_dir).specs
    pool_sinks = to_mapping(options.spec.sinks)
    kept: dict[str, CryptoPipelineSpec] = {}
    for spec in found:
        if to_mapping(spec.sinks) != pool_sinks:
            log.error("pipeline left out: its sinks differ from the pool's",
                      extra={"symbol": spec.symbol})  # fmt: skip
        elif spec.symbol in kept and kept[spec.symbol] != spec:
            log.error("pipeline left out: its symbol is in the pool twice",
                      extra={"symbol": spec.symbol})  # fmt: skip
        else:
            kept[spec.symbol] = spec
    return [kept[symbol] for symbol in sorted(kept)]


def sink_targets(options: AggregateOptions, fs: HadoopFs, ids: SchemaIds) -> SinkTargets:
    sinks = options.spec.sinks
    return SinkTargets(
        parquet=ParquetLayout(options.base) if sinks.hdfs.enabled else None,
        hive_table=(
            f"{sinks.hive.database}.candles"
            if sinks.hive.enabled and sinks.hdfs.enabled and options.metastore_uri
            else None
        ),
        kafka_bootstrap=options.bootstrap_servers if sinks.kafka.enabled else None,
        sheets_outbox=Outbox(fs, f"{options.base}/_sheets_outbox")
        if sinks.sheets.enabled
        else None,
        ids=ids,
    )


def sheets_sync(options: AggregateOptions, outbox: Outbox, metrics: AggregateMetrics) -> SheetsSync:
    sheets = options.spec.sinks.sheets
    if not options.sheets_credentials or not sheets.spreadsheet_id:
        raise SpecError(["sinks.sheets: enabled, but no --sheets-credentials or spreadsheetId"])
    credentials, spreadsheet_id = options.sheets_credentials, sheets.spreadsheet_id

    def connect() -> SheetsWriter:
        return SheetsWriter(
            open_spreadsheet(credentials, spreadsheet_id, api_url=options.sheets_api_url)
        )

    return SheetsSync(outbox, connect, on_stats=metrics.sheets_stats)


def candle_topics(options: AggregateOptions) -> list[str]:
    return list(pool_candle_topics(options.specs))


def pool_candle_topics(specs: Sequence[CryptoPipelineSpec]) -> dict[str, dict[str, int | str]]:
    """Every member's candle topics, with its spec's retention."""
    return {
        topics.candles(interval, spec.symbol): topic_config(spec, "candles")
        for spec in specs
        for interval in spec.intervals
    }


def ensure_candle_topics(
    options: AggregateOptions, specs: Sequence[CryptoPipelineSpec] | None = None
) -> None:
    """Create missing candle topics (a KafkaTopic does it in a cluster; this covers local runs)."""
    kafka = options.spec.sinks.kafka
    admin = KafkaAdminClient(
        **client_config(),
        bootstrap_servers=options.bootstrap_servers,
        client_id="cryptopipe-aggregate",
    )
    try:
        ensured = ensure_topics(
            admin,
            pool_candle_topics(options.specs if specs is None else specs),
            TopicSettings(kafka.partitions, kafka.replication),
        )
    finally:
        admin.close()
    log_ensured(log, ensured)


def existing_topics(bootstrap_servers: str) -> Callable[[], set[str]]:
    admin = KafkaAdminClient(
        **client_config(), bootstrap_servers=bootstrap_servers, client_id="cryptopipe-aggregate"
    )

    def listed() -> set[str]:
        return set(admin.list_topics())

    return listed


def trade_records(spark: SparkSession, options: AggregateOptions) -> DataFrame:
    """The Kafka rows of every spec's trades topic, read in as many tasks as Spark has cores."""
    return trades.kafka_trades(
        spark,
        options.bootstrap_servers,
        [s.symbol for s in options.specs],
        max_offsets_per_trigger=options.max_offsets_per_trigger,
        min_partitions=spark.sparkContext.defaultParallelism,
    )


def start_query(
    spark: SparkSession,
    options: AggregateOptions,
    writer: BatchWriter,
) -> StreamingQuery:
    """One query over every spec's trades topic, at the checkpoint root itself (benchmarks and
    tests of the aggregation; the driver runs a pool through start_group_query)."""
    spec = options.spec
    return _start_stream(
        options,
        trade_records(spark, options),
        pipeline.AggregateSettings(spec.intervals, spec.watermark),
        "cryptopipe-aggregate",
        options.checkpoint_location,
        writer,
    )


def start_group_query(
    spark: SparkSession,
    options: AggregateOptions,
    group: pool.QueryGroup,
    subscription: pool.Subscription,
    checkpoint: str,
    writer: MemberWriter,
) -> StreamingQuery:
    records = trades.kafka_topics(
        spark,
        options.bootstrap_servers,
        subscription.topics,
        max_offsets_per_trigger=options.max_offsets_per_trigger,
        min_partitions=spark.sparkContext.defaultParallelism,
        fail_on_data_loss=not subscription.lenient,
    )
    settings = pipeline.AggregateSettings(group.settings.intervals, group.settings.watermark)
    return _start_stream(
        options, records, settings, f"cryptopipe-aggregate-{group.key}", checkpoint, writer
    )


def _start_stream(
    options: AggregateOptions,
    records: DataFrame,
    settings: pipeline.AggregateSettings,
    name: str,
    checkpoint: str,
    writer: Callable[[DataFrame, int], None],
) -> StreamingQuery:
    decoded = pipeline.observed_input(trades.trades(records))
    candles = pipeline.candle_stream(pipeline.valid_trades(decoded), settings)
    stream = (
        candles.writeStream.outputMode("append")
        .queryName(name)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(writer)
    )
    if options.available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=options.trigger_interval)
    return stream.start()


def run(options: AggregateOptions, spark: SparkSession, stop_on_signal: bool = True) -> int:
    """Run the pool until stopped (or, with available_now, until its topics are drained)."""
    check_specs(members(options))
    log.info("kafka security", extra={"kafka_security": current().describe()})
    ids = registered_ids(options.schema_registry_url) if options.schema_registry_url else None
    fs = HadoopFs(spark, options.base)
    targets = sink_targets(options, fs, ids or SchemaIds.derived())
    if targets.hive_table and options.hive_ddl_dir is not None:
        # Idempotent (IF NOT EXISTS): in a cluster the aggregator is the first to need them.
        apply_ddl(spark, options.hive_ddl_dir, ddl_variables(options.spec, options.hdfs_url))
    if targets.hive_table and not spark.catalog.tableExists(targets.hive_table):
        raise SpecError([f"sinks.hive: {targets.hive_table} is missing; run cryptopipe-hive-ddl"])
    metrics = AggregateMetrics()
    if options.metrics_port:
        start_http_server(options.metrics_port, registry=metrics.registry)
    sync = (
        sheets_sync(options, targets.sheets_outbox, metrics)
        if targets.sheets_outbox is not None
        else None
    )
    listener = ProgressListener(metrics)
    spark.streams.addListener(listener)
    if sync is not None:
        sync.start()
    stop = stop_on_signals() if stop_on_signal else threading.Event()

    def make_writer(key: str) -> BatchWriter:
        return BatchWriter(spark, fs, group_targets(targets, key), sync)

    queries = PoolQueries(
        start_query=lambda group, subscription, checkpoint, writer: start_group_query(
            spark, options, group, subscription, checkpoint, writer
        ),
        make_writer=make_writer,
        fs=fs,
        checkpoint_root=options.checkpoint_location,
        list_topics=existing_topics(options.bootstrap_servers),
        max_restarts=options.max_restarts,
    )
    try:
        return _supervise(options, queries, targets.kafka_bootstrap is not None, stop)
    finally:
        queries.stop_all()
        spark.streams.removeListener(listener)
        if sync is not None:
            sync.stop()


def group_targets(targets: SinkTargets, key: str) -> SinkTargets:
    """The pool's sinks, with the staging and outbox names of one query (see ParquetLayout)."""
    return dataclasses.replace(
        targets,
        parquet=dataclasses.replace(targets.parquet, writer=key) if targets.parquet else None,
        sheets_outbox=(
            dataclasses.replace(targets.sheets_outbox, writer=key)
            if targets.sheets_outbox
            else None
        ),
    )


def _supervise(
    options: AggregateOptions,
    queries: PoolQueries,
    candle_topics_wanted: bool,
    stop: threading.Event,
) -> int:
    """Follow the pool's membership and keep its queries running.

    Spark 4.1.1's Kafka source fails the first batch after a driver crash while reporting its
    progress (KafkaMicroBatchStream.metrics: Some(null) offsets when the batch is re-run from
    the offset log); the batch itself is already committed, and a restarted query goes on:
    PoolQueries.check restarts a failed query, at most max_restarts times.
    """
    known: list[CryptoPipelineSpec] = []
    polled = False
    next_poll = 0.0
    try:
        while not stop.is_set():
            # availableNow drains what the members had at the start: it reads them once.
            if not polled or (time.monotonic() >= next_poll and not options.available_now):
                current = members(options)
                if current != known and candle_topics_wanted:
                    ensure_candle_topics(options, current)
                known = current
                queries.sync(current)  # topics come and go too, members or not
                polled = True
                next_poll = time.monotonic() + options.membership_poll_seconds
            queries.check()
            if options.available_now and queries.all_finished():
                return 0
            queries.await_any(1.0)
    except QueryFailed as error:
        log.error("query failed", extra={"error": str(error)[:2000]})
        return 1
    log.info("stopped on request")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, "cryptopipe-aggregate", __doc__)
    parser.add_argument("--spec", action="append", default=[], help="spec file (repeatable)")
    parser.add_argument(
        "--spec-dir",
        type=Path,
        help="the pool's spec files, read again as pipelines join and leave (a ConfigMap volume)",
    )
    parser.add_argument(
        "--membership-poll-seconds",
        type=float,
        default=5.0,
        help="how often --spec-dir is read again",
    )
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--hdfs-url", required=True, help="hdfs://namenode:port")
    parser.add_argument("--metastore-uri", help="thrift://host:port; no Hive without it")
    parser.add_argument("--checkpoint", help="default: <hdfs base>/checkpoints/aggregate")
    parser.add_argument("--sheets-credentials", help="service-account JSON key file")
    parser.add_argument("--sheets-api-url", help="Sheets API endpoint instead of Google's")
    parser.add_argument(
        "--schema-registry-url",
        help="register schemas there and use its ids (default: ids derived from the schemas)",
    )
    parser.add_argument(
        "--trigger-interval", default="5 seconds", help="how often a micro-batch starts"
    )
    parser.add_argument("--available-now", action="store_true", help="drain the topics, stop")
    parser.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        help="most Kafka records a micro-batch reads (default: no limit)",
    )
    parser.add_argument(
        "--master",
        default="local[2]",
        help="Spark master; 'submit' leaves it to spark-submit (as the SparkApplication does)",
    )
    parser.add_argument("--jars", default="", help="comma-separated connector jars")
    parser.add_argument("--metrics-port", type=int, default=0, help="0 turns the endpoint off")
    parser.add_argument(
        "--spark-ui-port",
        type=int,
        default=0,
        help="Spark's web UI with its Prometheus servlet (/metrics/prometheus); 0: no UI",
    )
    parser.add_argument("--max-restarts", type=int, default=3, help="query restarts on failure")
    parser.add_argument(
        "--hive-ddl-dir",
        type=Path,
        help="apply hive/*.hql from here before starting (what cryptopipe-hive-ddl does)",
    )
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, quiet=("kafka",))
    try:
        specs = [load_spec_file(path) for path in args.spec]
        in_folder = list(read_spec_folder(args.spec_dir).specs) if args.spec_dir else []
        check_specs(specs + in_folder)
        ensure_free(args.metrics_port, "--metrics-port")
        ensure_free(args.spark_ui_port, "--spark-ui-port")
    except (SpecError, OSError) as error:
        return refuse("cryptopipe-aggregate", error)
    options = AggregateOptions(
        specs=specs,
        bootstrap_servers=args.bootstrap_servers,
        hdfs_url=args.hdfs_url,
        metastore_uri=args.metastore_uri,
        checkpoint=args.checkpoint,
        sheets_credentials=args.sheets_credentials,
        sheets_api_url=args.sheets_api_url,
        schema_registry_url=args.schema_registry_url,
        trigger_interval=args.trigger_interval,
        available_now=args.available_now,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        master=None if args.master == "submit" else args.master,
        jars=[jar for jar in args.jars.split(",") if jar],
        metrics_port=args.metrics_port,
        max_restarts=args.max_restarts,
        hive_ddl_dir=args.hive_ddl_dir,
        spec_dir=args.spec_dir,
        pool_spec=min(specs + in_folder, key=lambda spec: spec.symbol),
        membership_poll_seconds=args.membership_poll_seconds,
    )
    spark = create_session(
        SparkSettings(
            app_name="cryptopipe-aggregate",
            master=options.master,
            jars=options.jars,
            default_fs=options.hdfs_url,
            hive_metastore_uri=options.metastore_uri,
            ui_port=args.spark_ui_port or None,
        )
    )
    try:
        return run(options, spark)
    except (SpecError, RegistryError, KafkaAuthError) as error:
        print(f"cryptopipe-aggregate: {error}", file=sys.stderr)
        return 2
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
