"""Container images of every deployable, built with podman from images/<name>/Dockerfile.

No registry is reachable here, so the bases are made locally: Debian bookworm from
debootstrap, then a stand-in for python:3.11-slim-bookworm (Debian's python3 in a venv at
/usr/local) and one for eclipse-temurin:17-jre (Debian's openjdk-17-jre-headless), from
images/bases/. Podman runs with a configuration this module writes (runc, cgroupfs, overlay,
ulimits within the host's hard limits) instead of /etc/containers. Its image store lives in
the cache, so a warm run finds every layer and rebuilds nothing; the transient run state lives
in the test bed's run folder.

Each image is built from a context folder prepared here: the repository paths it needs (mtimes
pinned, so a fresh clone hits the layer cache) plus, for the JVM images and Spark, the jars the
test bed resolved from Maven Central. `scripts/images build|list|save` is the command line.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptopipe_testbed import paths, process, versions
from cryptopipe_testbed.components import hdfs, spark
from cryptopipe_testbed.components.base import Component, Health

PODMAN_VERSION = "4.3"
APT_PACKAGES = ("podman", "buildah", "skopeo", "debootstrap", "runc")
REQUIRED_COMMANDS = ("podman", "buildah", "skopeo", "debootstrap", "runc")
DEBIAN_SUITE = "bookworm"
DEBIAN_BASE = f"localhost/debian:{DEBIAN_SUITE}"
PYTHON_BASE = "localhost/cryptopipe/python-base:3.11"
JAVA_BASE = "localhost/cryptopipe/java-base:17"
PYTHON_APP_BASE = "localhost/cryptopipe/python-app:3.11"
# images/bases/<kind> -> its tag, in build order; each is built on DEBIAN_BASE unless named here.
BASES = {"python": PYTHON_BASE, "java": JAVA_BASE, "python-app": PYTHON_APP_BASE}
BASE_OF = {"python-app": PYTHON_BASE}
DEFAULT_REGISTRY = "localhost"
# Where RUN steps see the host's CA bundle (build time only): a path inside the build container.
BUILD_CA_DIR = "/tmp/build-ca"  # noqa: S108
# 1980-01-01: the content, not the checkout time, decides whether a COPY layer is reused.
PINNED_MTIME = 315_532_800
SKIPPED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache"
)


@dataclass(frozen=True)
class ImageSpec:
    """One deployable: what its build context holds besides images/<name>/."""

    name: str
    base: str  # a key of BASES
    sources: tuple[str, ...] = ()  # repository folders, copied to the same path in the context
    # context path -> folder on this machine whose files go there (Maven-resolved jars)
    jars: Mapping[str, Callable[[], Path]] = field(default_factory=dict)


def _hive_home() -> Path:
    return paths.component_cache("hive-metastore", versions.HIVE_METASTORE) / "dist"


def _hive_extra_lib() -> Path:
    return paths.component_cache("hive-metastore", versions.HIVE_METASTORE) / "extra-lib"


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("operator", "python-app", ("schemas", "operator")),
    ImageSpec("producer", "python-app", ("schemas", "jobs")),
    ImageSpec(
        "spark",
        "python-app",
        ("schemas", "jobs", "hive"),
        {"images/spark/jars": lambda: spark.jars_dir()},
    ),
    ImageSpec("trainer", "python-app", ("schemas", "model", "jobs")),
    ImageSpec("dashboard", "python-app", ("schemas", "dashboard")),
    ImageSpec("hadoop", "java", jars={"images/hadoop/lib": lambda: hdfs.hadoop_lib()}),
    ImageSpec(
        "hive-metastore",
        "java",
        jars={
            "images/hive-metastore/dist": _hive_home,
            "images/hive-metastore/extra-lib": _hive_extra_lib,
            "images/hive-metastore/hadoop-lib": lambda: hdfs.hadoop_lib(),
        },
    ),
)
BY_NAME: dict[str, ImageSpec] = {image.name: image for image in IMAGES}


def project_version() -> str:
    with (paths.REPO_ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def registry() -> str:
    return os.environ.get("CRYPTOPIPE_IMAGE_REGISTRY", DEFAULT_REGISTRY)


def reference(name: str, tag: str | None = None) -> str:
    """`<registry>/cryptopipe/<name>:<tag>`, the name the charts and the operator use."""
    return f"{registry()}/cryptopipe/{name}:{tag or project_version()}"


def home() -> Path:
    return paths.component_cache("podman", PODMAN_VERSION)


def _state() -> Path:
    return paths.run_root() / "podman"


def containers_conf() -> str:
    return f"""\
[containers]
# The host's hard limits; podman's defaults (1048576) are refused here.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun 1.8 refuses this host's hybrid cgroup hierarchy.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{_state() / "tmp"}"
"""


def storage_conf() -> str:
    return f"""\
[storage]
driver = "overlay"
graphroot = "{home() / "storage"}"
runroot = "{_state() / "runroot"}"
"""


def registries_conf() -> str:
    # Only local images: a short name must never trigger a pull attempt from a registry.
    return 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'


def podman_env() -> dict[str, str]:
    conf = home() / "conf"
    return {
        "CONTAINERS_CONF": str(conf / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(conf / "registries.conf"),
    }


def write_config() -> None:
    conf = home() / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (_state() / "tmp").mkdir(parents=True, exist_ok=True)
    files = {
        "containers.conf": containers_conf(),
        "storage.conf": storage_conf(),
        "registries.conf": registries_conf(),
        # pip inside a build trusts the host's CA bundle; mounted at build time, never baked in.
        "pip/pip.conf": f"[global]\ncert = {BUILD_CA_DIR}/ca-certificates.crt\n",
    }
    (conf / "pip").mkdir(exist_ok=True)
    for name, text in files.items():
        path = conf / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **podman_env()},
        check=check,
        stdin=subprocess.DEVNULL,
    )


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def image_size(ref: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def _log() -> Path:
    return paths.log_dir() / "images.log"


def install_tools() -> None:
    if all(shutil.which(command) for command in REQUIRED_COMMANDS):
        return
    print(f"images: apt-get install {' '.join(APT_PACKAGES)}", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=600"]  # another apt-get (a test bed install) may run
    process.run(["apt-get", *wait, "update"], log=_log(), env=env)
    process.run(
        ["apt-get", *wait, "install", "-y", "--no-install-recommends", *APT_PACKAGES],
        log=_log(),
        env=env,
    )


def debian_mirror(sources: Sequence[Path] | None = None) -> str:
    """The Debian mirror apt uses here (deb822 .sources or one-line sources.list)."""
    candidates = sources or [
        Path("/etc/apt/sources.list"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
    ]
    for path in candidates:
        if path.is_file():
            mirror = mirror_in(path.read_text())
            if mirror:
                return mirror
    return "http://deb.debian.org/debian"


def mirror_in(text: str) -> str | None:
    """The first URI serving the plain Debian archive (not -security) in an apt sources text."""
    for uri in re.findall(r"^(?:URIs:|deb)\s+(\S+)", text, flags=re.MULTILINE):
        if uri.rstrip("/").endswith("/debian"):
            return str(uri)
    return None


def _timed(what: str, action: Callable[[], None]) -> float:
    began = time.monotonic()
    action()
    seconds = time.monotonic() - began
    print(f"images: {what} in {seconds:.0f}s", flush=True)
    return seconds


def build_debian_base() -> None:
    if image_exists(DEBIAN_BASE):
        return
    rootfs = home() / "debootstrap" / DEBIAN_SUITE
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.mkdir(parents=True)

    def bootstrap() -> None:
        argv = ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), debian_mirror()]
        process.run(argv, log=_log())
        # What the official Debian images leave out too: downloaded packages and indexes.
        for leftover in ("var/cache/apt", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("**/*"):
                if path.is_file():
                    path.unlink()
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = subprocess.run(
                ["podman", "import", "-", DEBIAN_BASE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                env={**os.environ, **podman_env()},
                check=False,
            )
        if imported.returncode != 0 or tar.returncode != 0:
            raise process.StartError(f"podman import failed: {imported.stderr[-2000:]}")

    _timed(f"debootstrap {DEBIAN_SUITE} and import as {DEBIAN_BASE}", bootstrap)
    shutil.rmtree(rootfs, ignore_errors=True)


def _build_argv(
    dockerfile: Path, context: Path, tag: str, build_args: Mapping[str, str]
) -> list[str]:
    conf = home() / "conf"
    return [
        "podman",
        "build",
        "--layers",
        "--pull=never",
        # PyPI, Maven Central and the Debian mirror are reached through the host's network.
        "--network=host",
        # Beside the image's own /etc/ssl/certs, which apt's Java packages write to; pip (run
        # as root) reads the user configuration. Both leave only empty mount points behind.
        f"--volume=/etc/ssl/certs:{BUILD_CA_DIR}:ro",
        f"--volume={conf / 'pip'}:/root/.config/pip:ro",
        *(f"--build-arg={key}={value}" for key, value in build_args.items()),
        "--file",
        str(dockerfile),
        "--tag",
        tag,
        str(context),
    ]


def _podman_build(dockerfile: Path, context: Path, tag: str, build_args: Mapping[str, str]) -> None:
    process.run(_build_argv(dockerfile, context, tag, build_args), log=_log(), env=podman_env())


def build_bases() -> None:
    build_debian_base()
    for kind, tag in BASES.items():
        folder = paths.REPO_ROOT / "images" / "bases" / kind
        base = BASE_OF.get(kind, DEBIAN_BASE)
        build = functools.partial(
            _podman_build, folder / "Dockerfile", folder, tag, {"BASE_IMAGE": base}
        )
        _timed(f"base {tag}", build)


def _pin_mtimes(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            os.utime(Path(folder) / name, (PINNED_MTIME, PINNED_MTIME), follow_symlinks=False)
        os.utime(folder, (PINNED_MTIME, PINNED_MTIME))


def prepare_context(image: ImageSpec) -> Path:
    """A fresh folder with exactly what the image's Dockerfile copies."""
    context = home() / "contexts" / image.name
    shutil.rmtree(context, ignore_errors=True)
    for source in (*image.sources, f"images/{image.name}"):
        shutil.copytree(paths.REPO_ROOT / source, context / source, ignore=SKIPPED)
    for target, origin in image.jars.items():
        folder = origin()
        if not folder.is_dir():
            raise process.StartError(f"{folder} is missing: run scripts/testbed up first")
        shutil.copytree(folder, context / target, ignore=shutil.ignore_patterns(".complete"))
    _pin_mtimes(context)
    return context


def build_image(image: ImageSpec) -> tuple[float, int]:
    """Build one image (the layer cache makes an unchanged one take seconds); time and size."""
    ref = reference(image.name)
    began = time.monotonic()
    context = prepare_context(image)
    _podman_build(
        context / "images" / image.name / "Dockerfile",
        context,
        ref,
        {"BASE_IMAGE": BASES[image.base], "VERSION": project_version()},
    )
    return time.monotonic() - began, image_size(ref)


def _install_inputs() -> None:
    """The jars the JVM images and Spark copy: resolved by the test bed's own components."""
    from cryptopipe_testbed.components import hive

    spark.Spark().install()
    hdfs.Hdfs().install()
    hive.HiveMetastore().install()


def build(names: Sequence[str] = ()) -> dict[str, tuple[float, int]]:
    chosen = [BY_NAME[name] for name in names] if names else list(IMAGES)
    install_tools()
    write_config()
    build_bases()
    _install_inputs()
    results: dict[str, tuple[float, int]] = {}
    for image in chosen:
        print(f"images: building {reference(image.name)}", flush=True)
        seconds, size = build_image(image)
        results[image.name] = (seconds, size)
        print(f"images: {image.name} built in {seconds:.0f}s, {size / 2**20:.0f} MiB", flush=True)
    return results


class Images(Component):
    """`scripts/testbed up images` builds every image; nothing runs until a test runs one."""

    name = "images"
    version = project_version()

    def install(self) -> None:
        """Nothing here: `up` runs installs side by side, and apt-get must not race Postgres'."""

    def start(self) -> None:
        build()

    def stop(self) -> None:
        """Images are files in the cache; there is no process to stop."""

    def health(self) -> Health:
        if not shutil.which("podman"):
            return Health(False, "podman not installed")
        missing = [image.name for image in IMAGES if not image_exists(reference(image.name))]
        if missing:
            return Health(False, f"not built: {', '.join(missing)}")
        return Health(True, f"{len(IMAGES)} images tagged {project_version()}")

    def address(self) -> str:
        return f"{registry()}/cryptopipe"

    def env(self) -> dict[str, str]:
        return {
            **podman_env(),
            "CRYPTOPIPE_IMAGE_REGISTRY": registry(),
            "CRYPTOPIPE_IMAGE_TAG": project_version(),
        }


def _list() -> int:
    for image in IMAGES:
        ref = reference(image.name)
        size = f"{image_size(ref) / 2**20:.0f} MiB" if image_exists(ref) else "not built"
        print(f"{ref:<50} {size}")
    return 0


def save_archive(image_reference: str, archive: Path) -> Path:
    """A `podman save` docker-archive of one image (replacing `archive`), for `kind load
    image-archive` or `ctr import`."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    podman("save", "--format", "docker-archive", "-o", str(archive), image_reference)
    return archive


def _save(folder: Path, names: Sequence[str]) -> int:
    for name in names or list(BY_NAME):
        print(save_archive(reference(name), folder / f"{name}.tar"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/images", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build images (all by default)")
    build_parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BY_NAME))
    commands.add_parser("list", help="every image and its size")
    save_parser = commands.add_parser("save", help="podman save archives into a folder")
    save_parser.add_argument("folder", type=Path)
    save_parser.add_argument("names", nargs="*", metavar="name")
    commands.add_parser("env", help="the podman configuration variables, as shell exports")
    args = parser.parse_args(argv)
    unknown = [name for name in getattr(args, "names", []) if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    if args.command == "build":
        began = time.monotonic()
        build(args.names)
        print(f"images: done in {time.monotonic() - began:.0f}s", flush=True)
        return _list()
    if args.command == "list":
        return _list()
    if args.command == "save":
        return _save(args.folder, args.names)
    for key, value in Images().env().items():
        print(f"export {key}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
