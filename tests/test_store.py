"""The store: atomic puts, corruption detection by hash, abandoned work cleanup, locks."""

from __future__ import annotations

import multiprocessing
import os
import time

from optimize.store import ArtifactStore, atomic_write_text


def _artifact(store: ArtifactStore, content: bytes) -> str:
    workdir = store.new_workdir()
    (workdir / "model.bin").write_bytes(content)
    (workdir / "artifact.json").write_text('{"kind": "onnx", "file": "model.bin"}')
    return store.put_tree(workdir)


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = ArtifactStore(tmp_path)
    first = _artifact(store, b"weights")
    second = _artifact(store, b"weights")
    assert first == second
    assert (store.object_path(first) / "model.bin").read_bytes() == b"weights"
    assert list(store.tmp.iterdir()) == []


def test_entry_round_trip(tmp_path):
    store = ArtifactStore(tmp_path)
    digest = _artifact(store, b"w")
    store.put_entry("k1", {"artifacts": {"model": digest}, "metrics": {"accuracy": 0.9}})
    entry = ArtifactStore(tmp_path).get_entry("k1")
    assert entry["metrics"] == {"accuracy": 0.9} and entry["key"] == "k1"


def test_corrupted_object_is_detected_and_entry_dropped(tmp_path, caplog):
    store = ArtifactStore(tmp_path)
    digest = _artifact(store, b"good weights")
    store.put_entry("k1", {"artifacts": {"model": digest}})
    (store.object_path(digest) / "model.bin").write_bytes(b"good wei")  # truncated
    fresh = ArtifactStore(tmp_path)
    assert fresh.get_entry("k1") is None
    assert not fresh.object_path(digest).exists()
    assert not (fresh.entries / "k1.json").exists()
    assert "does not match its hash" in caplog.text


def test_truncated_entry_is_discarded(tmp_path, caplog):
    store = ArtifactStore(tmp_path)
    (store.entries / "k2.json").write_text('{"key": "k2", "artifa')
    assert store.get_entry("k2") is None
    assert not (store.entries / "k2.json").exists()
    assert "unreadable" in caplog.text


def test_entry_for_missing_object_is_refused_on_write(tmp_path):
    import pytest

    from optimize.errors import StoreError

    with pytest.raises(StoreError):
        ArtifactStore(tmp_path).put_entry("k3", {"artifacts": {"model": "0" * 64}})


def test_abandoned_work_of_dead_processes_is_removed(tmp_path):
    store = ArtifactStore(tmp_path)
    dead = store.tmp / "999999999-abandoned"
    dead.mkdir()
    (dead / "half.onnx").write_bytes(b"half")
    mine = store.new_workdir()
    ArtifactStore(tmp_path)
    assert not dead.exists() and mine.exists()


def test_atomic_write_leaves_old_content_until_rename(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def _hold_lock(root, key, started, seconds):
    store = ArtifactStore(root)
    with store.lock(key):
        started.set()
        time.sleep(seconds)


def test_lock_makes_a_second_process_wait(tmp_path):
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), "k", started, 1.0))
    holder.start()
    assert started.wait(30)
    waited = []
    begin = time.perf_counter()
    with ArtifactStore(tmp_path).lock("k", on_wait=lambda: waited.append(True)):
        elapsed = time.perf_counter() - begin
    holder.join()
    assert waited == [True] and elapsed > 0.5


def test_lock_is_released_when_the_holder_dies(tmp_path):
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), "k", started, 60))
    holder.start()
    assert started.wait(30)
    os.kill(holder.pid, 9)
    holder.join()
    with ArtifactStore(tmp_path).lock("k"):
        pass
