"""The registry's Storage protocol over WebHDFS, on the test bed's real HDFS."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from cryptopipe_jobs.storage.hdfs_storage import HdfsStorage, webhdfs_client
from cryptopipe_jobs.storage.locate import open_storage
from cryptopipe_jobs.train import sources
from cryptopipe_model.baselines import all_baselines
from cryptopipe_model.evaluate import walk_forward
from cryptopipe_model.lstm import LstmModel
from cryptopipe_model.registry import DataRange, Registry
from cryptopipe_schemas.spec import ModelSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def client(hdfs_env: dict[str, str]) -> Any:
    return webhdfs_client(hdfs_env["CRYPTOPIPE_WEBHDFS_URL"])


@pytest.fixture
def root(client: Any) -> Iterator[str]:
    path = f"/test-registry/{uuid.uuid4().hex}"
    yield path
    client.delete(path, recursive=True)


def test_blobs_round_trip_and_replace_atomically(client: Any, root: str) -> None:
    storage = HdfsStorage(client, root)
    assert not storage.exists("a/b.bin")
    assert storage.children("a") == []
    with pytest.raises(FileNotFoundError):
        storage.read("a/b.bin")
    storage.write("a/b.bin", b"\x00first")
    storage.write("a/c.json", b"{}")
    assert storage.read("a/b.bin") == b"\x00first"
    assert storage.children("a") == ["b.bin", "c.json"]
    assert storage.children("") == ["a"]
    assert storage.exists("a") and storage.exists("a/c.json")

    # Readers racing a stream of replacements see whole old or new blobs, never an error.
    blobs = [bytes([i]) * 100_000 for i in range(8)]
    seen: list[bytes] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(storage.read("a/b.bin"))
            except BaseException as error:  # collected for the assertion
                errors.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    for blob in blobs:
        storage.write("a/b.bin", blob)
    done.set()
    thread.join()
    assert errors == []
    assert seen and all(s == b"\x00first" or s in blobs for s in seen)
    assert storage.read("a/b.bin") == blobs[-1]
    # No temporary files left behind, hidden or not.
    assert client.list(f"{root}/a") == ["b.bin", "c.json"]


def test_paths_cannot_escape_the_root(client: Any, root: str) -> None:
    storage = HdfsStorage(client, root)
    with pytest.raises(ValueError, match="escapes"):
        storage.write("../outside", b"x")


def test_registry_round_trip_on_hdfs(hdfs_env: dict[str, str], root: str) -> None:
    storage = open_storage(
        f"{hdfs_env['CRYPTOPIPE_HDFS_URL']}{root}", hdfs_env["CRYPTOPIPE_WEBHDFS_URL"]
    )
    assert isinstance(storage, HdfsStorage) and storage.root == root
    registry = Registry(storage)
    assert registry.serving_choice().name == "persistence"
    spec = ModelSpec(lookback=8, horizon=3, layers=1, units=4, epochs=1, coverage=0.8)
    frame = sources.read_embedded().iloc[-300:].reset_index(drop=True)
    model = LstmModel(spec, seed=1)
    evaluation = walk_forward(
        frame, [*all_baselines(3, 0.8), model], horizon=3, coverage=0.8, test_size=40, n_folds=2
    )
    predictor = model.fit(frame)
    record = registry.register(
        predictor, evaluation, DataRange.of(frame), extra={"report.md": b"# report"}
    )
    assert registry.versions() == [record.version]
    assert registry.record(record.version) == record
    assert storage.read(f"versions/{record.version}/extra/report.md") == b"# report"
    loaded = registry.load(record.version)
    origins = np.arange(len(frame) - 20, len(frame))
    np.testing.assert_allclose(
        loaded.predict(frame, origins).point, predictor.predict(frame, origins).point, rtol=1e-6
    )
    choice = registry.serving_choice()
    if record.promoted:
        assert (choice.kind, choice.name) == ("model", record.version)
    else:
        assert (choice.kind, choice.name) == ("baseline", record.best_baseline)


def test_registry_keeps_the_serving_version_and_the_newest_on_hdfs(
    hdfs_env: dict[str, str], client: Any, root: str
) -> None:
    storage = HdfsStorage(client, root)
    registry = Registry(storage)
    spec = ModelSpec(lookback=8, horizon=3, layers=1, units=4, epochs=1, coverage=0.8)
    frame = sources.read_embedded().iloc[-300:].reset_index(drop=True)
    model = LstmModel(spec, seed=1)
    evaluation = walk_forward(
        frame, [*all_baselines(3, 0.8), model], horizon=3, coverage=0.8, test_size=40, n_folds=2
    )
    predictor = model.fit(frame)
    for _ in range(3):
        registry.register(predictor, evaluation, DataRange.of(frame))
    registry.promote("v0001", "pinned by hand")
    # A training that crashed before its manifest, newer than every complete version: it may
    # still be writing, so it stays.
    storage.write("versions/v0004/model.keras", b"partial")

    assert registry.prune(keep=1) == ["v0002"]
    assert registry.versions() == ["v0001", "v0003"]
    assert storage.children("versions") == ["v0001", "v0003", "v0004"]

    registry.register(predictor, evaluation, DataRange.of(frame))  # numbers go on: v0005
    registry.promote("v0001", "pinned by hand")
    # Now the partial folder is older than a complete version: a crash's leftover.
    assert registry.prune(keep=1) == ["v0003", "v0004"]
    assert storage.children("versions") == ["v0001", "v0005"]
    origins = np.arange(len(frame) - 5, len(frame))
    np.testing.assert_allclose(
        registry.load("v0001").predict(frame, origins).point,
        predictor.predict(frame, origins).point,
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="root"):
        storage.delete(".")
