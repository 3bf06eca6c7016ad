"""cryptopipe-aggregate: trades from Kafka into finalized candles in HDFS, Hive, Kafka, Sheets.

Configuration is the CryptoPipeline spec (one or more, sharing intervals, watermark and sinks)
plus the endpoints. The query's checkpoint lives on HDFS, so a restarted driver resumes where
the last committed micro-batch ended. Runnable as a console script or by spark-submit.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from prometheus_client import start_http_server
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from cryptopipe_jobs.aggregate import pipeline, trades
from cryptopipe_jobs.aggregate.progress import AggregateMetrics, ProgressListener
from cryptopipe_jobs.cli import refuse, stop_on_signals
from cryptopipe_jobs.kafka_io import TopicSettings, ensure_topics
from cryptopipe_jobs.ports import ensure_free
from cryptopipe_jobs.sinks.batch_writer import BatchWriter, SinkTargets
from cryptopipe_jobs.sinks.hadoop_fs import HadoopFs
from cryptopipe_jobs.sinks.hive_ddl import apply_ddl, ddl_variables
from cryptopipe_jobs.sinks.parquet import ParquetLayout
from cryptopipe_jobs.sinks.sheets import SheetsWriter
from cryptopipe_jobs.sinks.sheets_client import open_spreadsheet
from cryptopipe_jobs.sinks.sheets_outbox import Outbox, SheetsSync
from cryptopipe_jobs.spark_session import SparkSettings, create_session
from cryptopipe_schemas import logs, topics
from cryptopipe_schemas.flags import add_log_level, entry_parser
from cryptopipe_schemas.registry import RegistryError, SchemaIds, register_all
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, load_spec_file
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

    @property
    def spec(self) -> CryptoPipelineSpec:
        """The spec whose shared settings (intervals, watermark, sinks) apply to all symbols."""
        return self.specs[0]

    @property
    def base(self) -> str:
        return storage_base(self.hdfs_url, self.spec.sinks.hdfs.path)

    @property
    def checkpoint_location(self) -> str:
        return self.checkpoint or checkpoint_location(self.base, "aggregate")


def check_specs(specs: Sequence[CryptoPipelineSpec]) -> None:
    """One query serves several symbols only when they agree on everything but the symbol."""
    problems = []
    first = specs[0]
    for spec in specs[1:]:
        for name in ("intervals", "watermark", "sinks"):
            if getattr(spec, name) != getattr(first, name):
                problems.append(f"{spec.symbol}: {name} differs from {first.symbol}'s")
    if len({spec.symbol for spec in specs}) != len(specs):
        problems.append("symbols: each symbol once")
    if problems:
        raise SpecError(problems)


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
    return [
        topics.candles(interval, spec.symbol)
        for spec in options.specs
        for interval in options.spec.intervals
    ]


def ensure_candle_topics(options: AggregateOptions) -> None:
    """Create missing candle topics (a KafkaTopic does it in a cluster; this covers local runs)."""
    kafka = options.spec.sinks.kafka
    admin = KafkaAdminClient(
        bootstrap_servers=options.bootstrap_servers, client_id="cryptopipe-aggregate"
    )
    try:
        created = ensure_topics(
            admin, candle_topics(options), TopicSettings(kafka.partitions, kafka.replication)
        )
    finally:
        admin.close()
    if created:
        log.info("created topics", extra={"topics": created})


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
    spec = options.spec
    decoded = pipeline.observed_input(trades.trades(trade_records(spark, options)))
    candles = pipeline.candle_stream(
        pipeline.valid_trades(decoded), pipeline.AggregateSettings(spec.intervals, spec.watermark)
    )
    stream = (
        candles.writeStream.outputMode("append")
        .queryName("cryptopipe-aggregate")
        .option("checkpointLocation", options.checkpoint_location)
        .foreachBatch(writer)
    )
    if options.available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=options.trigger_interval)
    return stream.start()


def run(options: AggregateOptions, spark: SparkSession, stop_on_signal: bool = True) -> int:
    """Run until stopped (or, with available_now, until the topics are drained)."""
    check_specs(options.specs)
    ids = register_all(options.schema_registry_url) if options.schema_registry_url else None
    fs = HadoopFs(spark, options.base)
    targets = sink_targets(options, fs, ids or SchemaIds.derived())
    if targets.hive_table and options.hive_ddl_dir is not None:
        # Idempotent (IF NOT EXISTS): in a cluster the aggregator is the first to need them.
        apply_ddl(spark, options.hive_ddl_dir, ddl_variables(options.spec, options.hdfs_url))
    if targets.hive_table and not spark.catalog.tableExists(targets.hive_table):
        raise SpecError([f"sinks.hive: {targets.hive_table} is missing; run cryptopipe-hive-ddl"])
    if targets.kafka_bootstrap is not None:
        ensure_candle_topics(options)
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
    writer = BatchWriter(spark, fs, targets, sync)
    try:
        return _supervise(spark, options, writer, stop)
    finally:
        spark.streams.removeListener(listener)
        if sync is not None:
            sync.stop()


def _supervise(
    spark: SparkSession, options: AggregateOptions, writer: BatchWriter, stop: threading.Event
) -> int:
    """Run the query; restart it from its checkpoint when it fails, at most max_restarts times.

    Spark 4.1.1's Kafka source fails the first batch after a driver crash while reporting its
    progress (KafkaMicroBatchStream.metrics: Some(null) offsets when the batch is re-run from
    the offset log); the batch itself is already committed, and a restarted query goes on.
    """
    restarts = 0
    while True:
        query = start_query(spark, options, writer)
        try:
            while query.isActive and not stop.is_set():
                query.awaitTermination(1)
        except StreamingQueryException as error:
            if restarts >= options.max_restarts:
                log.error("query failed", extra={"error": str(error)[:2000]})
                return 1
            restarts += 1
            log.warning(
                "query failed; restarting from the checkpoint",
                extra={"error": str(error)[:500], "restart": restarts},
            )
            continue
        if stop.is_set():
            query.stop()
            log.info("stopped on request")
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, "cryptopipe-aggregate", __doc__)
    parser.add_argument("--spec", action="append", required=True, help="spec file (repeatable)")
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
        check_specs(specs)
        ensure_free(args.metrics_port, "--metrics-port")
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
    )
    spark = create_session(
        SparkSettings(
            app_name="cryptopipe-aggregate",
            master=options.master,
            jars=options.jars,
            default_fs=options.hdfs_url,
            hive_metastore_uri=options.metastore_uri,
        )
    )
    try:
        return run(options, spark)
    except (SpecError, RegistryError) as error:
        print(f"cryptopipe-aggregate: {error}", file=sys.stderr)
        return 2
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
