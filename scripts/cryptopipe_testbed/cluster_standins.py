"""Stand-ins for the upstream images `scripts/cluster` installs, where no registry can give them.

- Kubeflow spark-operator: its own chart (from its Go module, the version the test bed pins)
  with a stand-in image: the Go-built controller on our Spark image (kind_dockerfiles).
- PostgreSQL (the platform chart's `postgres.image`): the test bed's Debian-packaged stand-in.
- Strimzi: its operator and Kafka images cannot be had; the platform chart's
  `kafka.provider: external` points at an Apache Kafka outside the cluster instead.
- ingress-nginx: its image cannot be had; the dashboard is reached with `kubectl port-forward`.

`python -m cryptopipe_testbed.cluster_standins FOLDER` builds the images, saves them into FOLDER
and prints, as JSON, what `scripts/cluster up --offline` needs: the archives to load, the
spark-operator chart and the stand-in image references.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from cryptopipe_testbed import kind_image, node_images, paths, process, versions
from cryptopipe_testbed.components import images, spark_operator

SPARK_OPERATOR_IMAGE = f"localhost/cryptopipe-standin/spark-operator:{versions.SPARK_OPERATOR}"


def spark_operator_chart() -> Path:
    return spark_operator.module_dir() / "charts" / "spark-operator-chart"


def build_spark_operator() -> str:
    spark_operator.SparkOperator().install()  # the Go build, cached
    images.build(["spark"])
    context = images.home() / "kind-contexts" / "spark-operator"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(kind_image.DOCKERFILES / "spark-operator", context)
    shutil.copy2(spark_operator.binary(), context / "spark-operator")
    images._pin_mtimes(context)
    argv = [
        "podman", "build", "--layers", "--pull=never", "--network=none",
        f"--build-arg=BASE_IMAGE={images.reference('spark')}",
        "--tag", SPARK_OPERATOR_IMAGE, str(context),
    ]  # fmt: skip
    process.run(argv, log=paths.log_dir() / "cluster-standins.log", env=images.podman_env())
    return SPARK_OPERATOR_IMAGE


def build_postgres() -> str:
    images.build_debian_base()
    node_images.build(node_images.POSTGRES)
    return node_images.POSTGRES.reference


def save(folder: Path, references: list[str]) -> list[str]:
    """One archive per image, for `kind load image-archive`."""
    return [
        str(images.save_archive(ref, folder / (ref.rsplit("/", 1)[1].replace(":", "-") + ".tar")))
        for ref in references
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryptopipe_testbed.cluster_standins")
    parser.add_argument("folder", type=Path, help="where the image archives go")
    args = parser.parse_args(argv)
    images.install_tools()
    images.write_config()
    spark_operator_image, postgres_image = build_spark_operator(), build_postgres()
    found = {
        "archives": save(args.folder, [spark_operator_image, postgres_image]),
        "spark_operator_chart": str(spark_operator_chart()),
        "spark_operator_image": spark_operator_image,
        "postgres_image": postgres_image,
    }
    print(json.dumps(found))  # the last line: what scripts/cluster reads
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
