"""Content-addressed artifact store with atomic writes and per-key locks.

Layout under the store root:
    objects/<sha256>/      one artifact folder, named by the hash of its content
    entries/<key>.json     what a cache key produced: an artifact hash and a result record
    locks/<key>.lock       held while a process computes that key, so a second waits
    tmp/<pid>-<uuid>/      work in progress; renamed into objects/ only when complete

Nothing is visible under objects/ or entries/ before it is complete (rename is atomic on one
file system), and every entry is checked against the hash of its artifact before it is trusted:
a killed run or a corrupted file never yields a cache hit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optimize.errors import StoreError
from optimize.hashing import hash_tree

log = logging.getLogger(__name__)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary sibling, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.entries = self.root / "entries"
        self.locks = self.root / "locks"
        self.tmp = self.root / "tmp"
        self._verified: set[str] = set()
        try:
            for folder in (self.objects, self.entries, self.locks, self.tmp):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the artifact store at {self.root}: {exc.strerror}") from exc
        self._remove_abandoned_work()

    # -- work folders -------------------------------------------------------------------
    def new_workdir(self) -> Path:
        """A private folder on the store's file system, so the final rename is atomic."""
        path = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def _remove_abandoned_work(self) -> None:
        for path in self.tmp.iterdir():
            pid_text = path.name.split("-", 1)[0]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                shutil.rmtree(path, ignore_errors=True)

    # -- objects ------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.objects / digest

    def put_tree(self, workdir: Path) -> str:
        """Move a finished work folder into objects/ under its content hash."""
        digest = hash_tree(workdir)
        target = self.object_path(digest)
        if target.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            if not self.verify_object(digest):
                raise StoreError(f"store object {digest[:12]} is corrupt and could not be replaced")
            return digest
        try:
            os.rename(workdir, target)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # a concurrent run stored the same bytes
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                raise StoreError(f"cannot store an artifact in {self.objects}: {exc.strerror}") from exc
        self._verified.add(digest)
        return digest

    def verify_object(self, digest: str) -> bool:
        """True when the object exists and its content still has its hash; else it is removed."""
        if digest in self._verified:
            return True
        path = self.object_path(digest)
        if not path.is_dir():
            return False
        if hash_tree(path) == digest:
            self._verified.add(digest)
            return True
        log.warning("store object %s does not match its hash: discarding it and rebuilding", digest[:12])
        quarantine = self.tmp / f"{os.getpid()}-corrupt-{uuid.uuid4().hex}"
        with contextlib.suppress(OSError):
            os.rename(path, quarantine)
            shutil.rmtree(quarantine, ignore_errors=True)
        return False

    # -- entries ------------------------------------------------------------------------
    def _entry_path(self, key: str) -> Path:
        return self.entries / f"{key}.json"

    def get_entry(self, key: str) -> dict[str, Any] | None:
        """The record stored under key, or None when absent, unreadable or its artifact is bad."""
        path = self._entry_path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("cache entry %s is unreadable: discarding it", key[:12])
            self._drop_entry(path)
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            log.warning("cache entry %s is malformed: discarding it", key[:12])
            self._drop_entry(path)
            return None
        for digest in record.get("artifacts", {}).values():
            if not self.verify_object(digest):
                log.warning("cache entry %s points to a missing or corrupt artifact: rebuilding", key[:12])
                self._drop_entry(path)
                return None
        return record

    def put_entry(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        for digest in record.get("artifacts", {}).values():
            if not self.object_path(digest).is_dir():
                raise StoreError(
                    f"refusing to write cache entry {key[:12]}: artifact {digest[:12]} is not stored"
                )
        record = {**record, "key": key, "created": time.time()}
        atomic_write_json(self._entry_path(key), record)
        return record

    def _drop_entry(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    # -- locks --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, on_wait=None) -> Iterator[None]:
        """Exclusive lock on a key across processes; the kernel releases it if we die."""
        path = self.locks / f"{key}.lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
