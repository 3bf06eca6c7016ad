"""A kind node image assembled here, offline, for `kind create cluster --image`.

`kind build node-image` cannot run here: it calls the docker CLI and pulls its base and the
control-plane images from registries. Instead (kind_dockerfiles/):

1. the node: Debian bookworm with kind's base files, Debian's containerd and runc, and the
   Go-built kubeadm, kubelet and kubectl (kind_dockerfiles/node);
2. the images kubeadm and kind start, built here and tagged with the names they ask for: the
   control plane `FROM scratch` around its static binary, kube-proxy on Debian (it needs
   iptables), CoreDNS, the pause process, and kind's default storage (local-path);
3. those images preloaded into the node's containerd: the node image runs once with containerd
   alone, `ctr images import` reads one `podman save` archive, and the container is committed
   with kind's entry point.

The result is tagged NODE_IMAGE and labelled with a digest of its inputs (the node layer's and
every preloaded image's ids): a warm run rebuilds each part from podman's layer cache in seconds
and commits a new node image only when an input changed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptopipe_testbed import (
    kind_build,
    kube_build,
    node_build,
    node_images,
    paths,
    process,
    versions,
)
from cryptopipe_testbed.components import images

DOCKERFILES = Path(__file__).resolve().parent / "kind_dockerfiles"
NODE_BASE = f"localhost/cryptopipe-testbed/kind-node-base:{versions.KUBERNETES}"
NODE_IMAGE = f"localhost/cryptopipe-testbed/kind-node:{versions.KUBERNETES}"
INPUTS_LABEL = "io.cryptopipe.kind-node.inputs"
ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'
PRELOAD_CONTAINER = "cryptopipe-kind-preload"
# Runs inside the node image with containerd alone: import the archive, stop, leave no state.
PRELOAD_SCRIPT = """\
set -eu
containerd >/tmp/containerd.log 2>&1 &
daemon=$!
for _ in $(seq 150); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
ctr --namespace k8s.io images import --all-platforms --no-unpack /preload.tar
ctr --namespace k8s.io images list --quiet
kill "$daemon"; wait "$daemon" || true
rm -rf /tmp/containerd.log /run/containerd
"""


@dataclass(frozen=True)
class Payload:
    """One image the node preloads: built from kind_dockerfiles/<folder>, tagged `tags`."""

    folder: str
    tags: tuple[str, ...]
    fill: Callable[[Path], None]
    build_args: tuple[tuple[str, str], ...] = ()
    on_debian: bool = False


def _log() -> Path:
    return paths.log_dir() / "kind-image.log"


def _copy(source: Callable[[], Path], name: str) -> Callable[[Path], None]:
    def fill(context: Path) -> None:
        shutil.copy2(source() / name, context / name)

    return fill


def kubeadm_images() -> dict[str, str]:
    """Component -> the image reference kubeadm uses for this Kubernetes version."""
    listed = subprocess.run(
        [
            str(kind_build.kubeadm_bin() / "kubeadm"),
            "config",
            "images",
            "list",
            f"--kubernetes-version={versions.KUBERNETES}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {ref.rsplit("/", 1)[1].split(":")[0]: ref for ref in listed}


def kind_storage() -> tuple[str, str, str]:
    """kind's default storage manifest and its provisioner and helper images, read from kind's
    own source so that the node holds exactly what `kind create cluster` applies."""
    source = (
        kube_build.module_dir(kind_build.KIND_MODULE, versions.KIND)
        / "pkg"
        / "build"
        / "nodeimage"
        / "const_storage.go"
    ).read_text()
    constants = dict(re.findall(r'^const (\w+Image) = "([^"]+)"', source, flags=re.MULTILINE))
    # The manifest is the file's last constant: raw strings joined around the image names.
    body = re.search(r"const defaultStorageManifest = `(.*)`\s*$", source, flags=re.DOTALL)
    if body is None or len(constants) != 2:
        raise process.StartError("kind's storage manifest was not found in its source")
    manifest = re.sub(r"` \+ (\w+) \+ `", lambda m: constants[m.group(1)], body.group(1))
    return (
        manifest,
        constants["storageProvisionerImage"],
        constants["storageHelperImage"],
    )


def payloads() -> list[Payload]:
    kubeadm = kubeadm_images()
    _, provisioner, helper = kind_storage()
    control_plane = [
        Payload(
            "control-plane",
            (kubeadm[name],),
            _copy(kube_build.kube_bin, name),
            (("BINARY", name),),
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ]
    pause = kubeadm["pause"]
    return [
        *control_plane,
        Payload(
            "control-plane",
            (kubeadm["etcd"],),
            _copy(kube_build.etcd_bin, "etcd"),
            (("BINARY", "etcd"),),
        ),
        Payload(
            "kube-proxy",
            (kubeadm["kube-proxy"],),
            _copy(node_build.kube_node_bin, "kube-proxy"),
            on_debian=True,
        ),
        Payload("coredns", (kubeadm["coredns"],), _copy(node_build.coredns_bin, "coredns")),
        # kind's containerd configuration names pause 3.10; kubeadm's list the newer tag.
        Payload("pause", (pause, pause.rsplit(":", 1)[0] + ":3.10"), _pause_context),
        Payload("local-path-provisioner", (provisioner,), _local_path_context),
        Payload("local-path-helper", (helper,), node_images._busybox_tree),
    ]


def _pause_context(context: Path) -> None:
    _from_node_dockerfiles(context, node_images.PAUSE)


def _local_path_context(context: Path) -> None:
    _from_node_dockerfiles(context, node_images.LOCAL_PATH)


def _from_node_dockerfiles(context: Path, image: node_images.NodeImage) -> None:
    """The test bed node's own Dockerfile for the same program (one recipe, two tags)."""
    shutil.copy2(node_images.DOCKERFILES / image.name / "Dockerfile", context / "Dockerfile")
    image.fill(context)


def _context(name: str, folder: str, fill: Callable[[Path], None]) -> Path:
    context = images.home() / "kind-contexts" / name
    shutil.rmtree(context, ignore_errors=True)
    source = DOCKERFILES / folder
    if source.is_dir():
        shutil.copytree(source, context)
    else:
        context.mkdir(parents=True)
    fill(context)
    images._pin_mtimes(context)
    return context


def _build(context: Path, tags: tuple[str, ...], args: dict[str, str], network: bool) -> str:
    argv = ["podman", "build", "--layers", "--pull=never"]
    argv.append("--network=host" if network else "--network=none")
    argv += [f"--build-arg={key}={value}" for key, value in args.items()]
    for tag in tags:
        argv += ["--tag", tag]
    process.run([*argv, str(context)], log=_log(), env=images.podman_env())
    return images.podman("image", "inspect", "--format", "{{.Id}}", tags[0]).stdout.strip()


def build_payload(payload: Payload) -> str:
    name = payload.tags[0].rsplit("/", 1)[1].replace(":", "-")
    context = _context(name, payload.folder, payload.fill)
    args = dict(payload.build_args)
    if payload.on_debian:
        args["BASE_IMAGE"] = images.DEBIAN_BASE
    return _build(context, payload.tags, args, network=payload.on_debian)


def _node_context(context: Path) -> None:
    shutil.copytree(kind_build.base_files(), context / "files")
    manifest, _, _ = kind_storage()
    (context / "default-storage.yaml").write_text(manifest)
    shutil.copy2(kind_build.kubeadm_bin() / "kubeadm", context / "kubeadm")
    shutil.copy2(node_build.kube_node_bin() / "kubelet", context / "kubelet")
    shutil.copy2(kube_build.kube_bin() / "kubectl", context / "kubectl")


def build_node_base() -> str:
    context = _context("node", "node", _node_context)
    args = {"BASE_IMAGE": images.DEBIAN_BASE, "KUBERNETES_VERSION": versions.KUBERNETES}
    return _build(context, (NODE_BASE,), args, network=True)


def _label(reference: str) -> str:
    if not images.image_exists(reference):
        return ""
    template = '{{index .Config.Labels "' + INPUTS_LABEL + '"}}'
    return images.podman("image", "inspect", "--format", template, reference).stdout.strip()


def build() -> str:
    """Build (or find) the node image; its reference."""
    kind_build.build_all()
    images.install_tools()
    images.write_config()
    images.build_debian_base()
    began = time.monotonic()
    base_id = build_node_base()
    built = {payload.tags: build_payload(payload) for payload in payloads()}
    digest = hashlib.sha256(
        "\n".join([base_id, *(f"{','.join(t)}={i}" for t, i in sorted(built.items()))]).encode()
    ).hexdigest()[:16]
    if _label(NODE_IMAGE) == digest:
        return NODE_IMAGE
    _preload(sorted(tag for tags in built for tag in tags), digest)
    print(f"kind node image {NODE_IMAGE} built in {time.monotonic() - began:.0f}s", flush=True)
    return NODE_IMAGE


def _preload(tags: list[str], digest: str) -> None:
    work = images.home() / "kind-preload"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    archive = work / "preload.tar"
    try:
        images.podman("save", "--multi-image-archive", "--format", "docker-archive",
                      "--output", str(archive), *tags)  # fmt: skip
        images.podman("rm", "--force", "--ignore", PRELOAD_CONTAINER)
        process.run(
            [
                "podman", "run", "--name", PRELOAD_CONTAINER, "--privileged", "--network=none",
                "--volume", f"{archive}:/preload.tar:ro", "--entrypoint", "/bin/sh",
                NODE_BASE, "-c", PRELOAD_SCRIPT,
            ],
            log=_log(),
            env=images.podman_env(),
        )  # fmt: skip
        images.podman(
            "commit", "--change", f"ENTRYPOINT {ENTRYPOINT}", "--change", "CMD []",
            "--change", f"LABEL {INPUTS_LABEL}={digest}", PRELOAD_CONTAINER, NODE_IMAGE,
        )  # fmt: skip
    finally:
        images.podman("rm", "--force", "--ignore", PRELOAD_CONTAINER, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(build())
