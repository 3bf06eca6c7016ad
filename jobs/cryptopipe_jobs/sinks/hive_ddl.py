"""cryptopipe-hive-ddl: apply hive/*.hql to the metastore for a CryptoPipeline spec.

The files use `${database}` (the spec's sinks.hive.database) and `${hdfs_base}` (the spec's
sinks.hdfs.path on the HDFS given by --hdfs-url). Every statement is idempotent (IF NOT EXISTS),
so the job runs before each aggregator start.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from cryptopipe_jobs.cli import refuse
from cryptopipe_jobs.spark_session import SparkSettings, create_session
from cryptopipe_schemas import logs
from cryptopipe_schemas.flags import add_log_level, entry_parser
from cryptopipe_schemas.spec import CryptoPipelineSpec, SpecError, load_spec_file

log = logging.getLogger("cryptopipe.hive_ddl")
_VARIABLE = re.compile(r"\$\{([a-z_]+)\}")


def render(text: str, variables: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) not in variables:
            raise KeyError(f"unknown variable ${{{match.group(1)}}} in the DDL")
        return variables[match.group(1)]

    return _VARIABLE.sub(value, text)


def statements(text: str) -> list[str]:
    """Split on `;` at line ends, leaving out comment lines."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [
        part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()
    ]


def ddl_variables(spec: CryptoPipelineSpec, hdfs_url: str) -> dict[str, str]:
    return {
        "database": spec.sinks.hive.database,
        "hdfs_base": hdfs_url.rstrip("/") + spec.sinks.hdfs.path.rstrip("/"),
    }


def apply_ddl(spark: SparkSession, ddl_dir: Path, variables: Mapping[str, str]) -> list[str]:
    """Run every statement of every .hql file in name order; return them as run."""
    applied = []
    for path in sorted(ddl_dir.glob("*.hql")):
        for statement in statements(render(path.read_text(encoding="utf-8"), variables)):
            spark.sql(statement)
            applied.append(statement)
        log.info("applied DDL", extra={"file": path.name})
    return applied


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(__package__, "cryptopipe-hive-ddl", __doc__)
    parser.add_argument("--spec", required=True, help="CryptoPipeline spec or manifest")
    parser.add_argument("--metastore-uri", required=True, help="thrift://host:port")
    parser.add_argument("--hdfs-url", required=True, help="hdfs://namenode:port")
    parser.add_argument("--ddl-dir", default="hive", type=Path, help="folder of .hql files")
    parser.add_argument("--master", default="local[1]", help="Spark master")
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, quiet=("kafka",))
    try:
        spec = load_spec_file(args.spec)
    except (SpecError, OSError) as error:
        return refuse("cryptopipe-hive-ddl", error)
    if not any(args.ddl_dir.glob("*.hql")):
        print(f"cryptopipe-hive-ddl: no .hql files in {args.ddl_dir}", file=sys.stderr)
        return 2
    spark = create_session(
        SparkSettings(
            app_name="cryptopipe-hive-ddl",
            master=args.master,
            default_fs=args.hdfs_url,
            hive_metastore_uri=args.metastore_uri,
        )
    )
    try:
        apply_ddl(spark, args.ddl_dir, ddl_variables(spec, args.hdfs_url))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
