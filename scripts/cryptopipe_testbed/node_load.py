"""Our deployables' images (components.images) in the real node's containerd, as `kind load`
does on kind: `podman save` piped into `ctr images import`.

An image is imported only when containerd lacks its reference or holds another podman image
id than the one imported last (a marker file per image beside node_images' markers), so a warm
call costs one `ctr images list` per image.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from cryptopipe_testbed import node_images, paths, process
from cryptopipe_testbed.components import images, node


def _log() -> Path:
    return paths.log_dir() / "node-load.log"


def _markers() -> Path:
    return node.layout().images / "project"


def _held(address: Path, reference: str) -> bool:
    listed = subprocess.run(
        node_images.ctr_argv(address, "images", "list", "--quiet", f"name=={reference}"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return reference in listed


def _import(address: Path, reference: str) -> None:
    """`podman save REF | ctr images import -`: no archive on disk."""
    with _log().open("ab") as log:
        saver = subprocess.Popen(
            ["podman", "save", "--format", "docker-archive", reference],
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, **images.podman_env()},
        )
        imported = subprocess.run(
            node_images.ctr_argv(address, "images", "import", "-"),
            stdin=saver.stdout,
            stdout=log,
            stderr=log,
            check=False,
        )
        if saver.stdout is not None:
            saver.stdout.close()
        saved = saver.wait()
    if saved != 0 or imported.returncode != 0:
        raise process.StartError(f"importing {reference} into containerd failed: see {_log()}")


def load(names: Sequence[str]) -> dict[str, float]:
    """Import images/<name> (already built with podman) into the node's containerd; the
    seconds each import took (0.0 when containerd already held that very image)."""
    address = node.layout().containerd_socket
    markers = _markers()
    markers.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}
    for name in names:
        reference = images.reference(name)
        image_id = images.podman("image", "inspect", "--format", "{{.Id}}", reference)
        wanted = image_id.stdout.strip()
        marker = markers / f"{name}.id"
        if _held(address, reference) and marker.exists() and marker.read_text() == wanted:
            took[name] = 0.0
            continue
        began = time.monotonic()
        _import(address, reference)
        marker.write_text(wanted)
        took[name] = time.monotonic() - began
    return took
