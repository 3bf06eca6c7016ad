"""The node's own images (pause, CoreDNS, local-path-provisioner, busybox) and the test bed's
stand-ins for upstream images (PostgreSQL), built with podman from `node_dockerfiles/` and
imported into containerd.

The node's own are `FROM scratch` images around one static binary, so no registry and no base
image is needed. A stand-in builds on the images component's Debian base (debootstrap) and
installs Debian's package, so its build reaches the Debian mirror. Podman runs with the images
component's configuration; its layer cache makes a rebuild of an unchanged image take about a
second, and an image is imported into containerd only when its podman id differs from the one
imported last.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptopipe_testbed import node_build, paths, process, versions
from cryptopipe_testbed.components import images

DOCKERFILES = Path(__file__).resolve().parent / "node_dockerfiles"
REPOSITORY = "localhost/cryptopipe-testbed"
CONTAINERD_NAMESPACE = "k8s.io"


def _busybox_tree(context: Path) -> None:
    """bin/busybox plus one link per applet (sh, mkdir, rm, sleep, wget, nslookup, ...)."""
    folder = context / "bin"
    folder.mkdir()
    busybox = folder / "busybox"
    shutil.copy2(node_build.debian_payload_dir() / "busybox", busybox)
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (folder / applet).symlink_to("busybox")


def _no_files(context: Path) -> None:
    """The Dockerfile's folder holds everything it copies."""


def _copy(source: Callable[[], Path], name: str) -> Callable[[Path], None]:
    def fill(context: Path) -> None:
        shutil.copy2(source() / name, context / name)

    return fill


@dataclass(frozen=True)
class NodeImage:
    name: str
    tag: str
    fill: Callable[[Path], None]  # puts what the Dockerfile copies into the context
    # None: FROM scratch, built offline; otherwise the base image the build's RUN steps need.
    base: str | None = None

    @property
    def reference(self) -> str:
        return f"{REPOSITORY}/{self.name}:{self.tag}"


PAUSE = NodeImage("pause", versions.DEBIAN_SUITE, _copy(node_build.debian_payload_dir, "catatonit"))
COREDNS = NodeImage("coredns", versions.COREDNS, _copy(node_build.coredns_bin, "coredns"))
LOCAL_PATH = NodeImage(
    "local-path-provisioner",
    versions.LOCAL_PATH_PROVISIONER,
    _copy(node_build.local_path_bin, "local-path-provisioner"),
)
BUSYBOX = NodeImage("busybox", versions.DEBIAN_SUITE, _busybox_tree)
# The official postgres image's stand-in, for the platform chart's database (postgres.image).
POSTGRES = NodeImage("postgres", versions.POSTGRES_MAJOR, _no_files, images.DEBIAN_BASE)
ALL = (PAUSE, COREDNS, LOCAL_PATH, BUSYBOX, POSTGRES)


def _log() -> Path:
    return paths.log_dir() / "node-images.log"


def _contexts() -> Path:
    return images.home() / "node-contexts"


def build(image: NodeImage) -> str:
    """Build one image with podman (a layer-cache hit when unchanged); its image id."""
    context = _contexts() / image.name
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(DOCKERFILES / image.name, context)
    image.fill(context)
    images._pin_mtimes(context)
    argv = ["podman", "build", "--layers", "--pull=never"]
    if image.base is None:
        argv.append("--network=none")
    else:
        images.build_debian_base()
        # Debian's packages come from the mirror apt uses, through the host's network.
        argv += ["--network=host", f"--build-arg=BASE_IMAGE={image.base}"]
    argv += ["--tag", image.reference, str(context)]
    process.run(argv, log=_log(), env=images.podman_env())
    inspected = images.podman("image", "inspect", "--format", "{{.Id}}", image.reference)
    return inspected.stdout.strip()


def ctr_argv(address: Path, *args: str) -> list[str]:
    return ["ctr", f"--address={address}", f"--namespace={CONTAINERD_NAMESPACE}", *args]


def ensure(image: NodeImage, address: Path, state: Path) -> bool:
    """Build one image and import it unless containerd holds that very build; True if imported."""
    image_id = build(image)
    marker = state / f"{image.name}.id"
    listed = subprocess.run(
        ctr_argv(address, "images", "list", "--quiet", f"name=={image.reference}"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if image.reference in listed and marker.exists() and marker.read_text() == image_id:
        return False
    archive = images.save_archive(image.reference, state / f"{image.name}.tar")
    process.run(ctr_argv(address, "images", "import", str(archive)), log=_log())
    archive.unlink()
    marker.write_text(image_id)
    return True


def import_all(address: Path, state: Path) -> None:
    """Build every node image and import the ones containerd lacks or holds stale."""
    images.install_tools()
    images.write_config()
    for image in ALL:
        ensure(image, address, state)


def containerd_images(address: Path) -> list[str]:
    """References of every image containerd holds for Kubernetes."""
    listed = subprocess.run(
        ctr_argv(address, "images", "list", "--quiet"),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    return [line for line in listed.stdout.split() if not line.startswith("sha256:")]
