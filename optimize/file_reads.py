"""Discover the files and folder listings that user code reads, so a cache key can include their content.

Build tools discover dependencies the same way: run the code once, watch what it opens, and key the
result on the content of what was opened. Watching uses one process-wide audit hook (audit hooks
cannot be removed), installed on first use and idle unless a recording is active. It sees the
events "open" (builtin open, os.open, pathlib, numpy.load, imports), "os.listdir", "os.scandir"
(pathlib's glob too) and "glob.glob/2".

Limits:
- reads done by C code that bypasses Python's open (fopen inside an extension) are not seen, nor
  reads done in other processes (DataLoader workers);
- files under the Python installation and site-packages are not recorded: they are covered by the
  library versions in a key; nor is this package's own code (covered by its code fingerprint),
  compiled bytecode (`__pycache__`), /proc, /sys and /dev;
- reads from every thread are recorded while a recording is active.
"""

from __future__ import annotations

import contextlib
import glob
import os
import site
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimize.hashing import hash_file, hash_value

# "glob.glob/2" (Python 3.10+) is raised with "glob.glob" and also carries root_dir and dir_fd.
_WATCHED_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "glob.glob/2"})


@dataclass
class Reads:
    """What code read: regular files opened for reading and folders whose entries it listed."""

    files: set[Path] = field(default_factory=set)
    folders: set[Path] = field(default_factory=set)

    def as_record(self) -> dict[str, list[str]]:
        """Plain lists of path strings, to be stored in a JSON cache entry."""
        return {"files": sorted(map(str, self.files)), "folders": sorted(map(str, self.folders))}

    @classmethod
    def from_record(cls, record: Mapping[str, Sequence[str]]) -> Reads:
        return cls(
            files={Path(p) for p in record.get("files", ())},
            folders={Path(p) for p in record.get("folders", ())},
        )


# Active recordings, innermost last, each with the folder prefixes it excludes; all receive events.
_active: list[tuple[Reads, tuple[str, ...]]] = []
_ignored: tuple[str, ...] = ()
_hook_installed = False


@contextmanager
def record_reads(exclude: Iterable[Path] = ()) -> Iterator[Reads]:
    """Record what the code run inside the block reads, leaving out anything under `exclude`."""
    _install_hook()
    reads = Reads()
    _active.append((reads, _folder_prefixes(exclude)))
    try:
        yield reads
    finally:
        for index, (active, _) in enumerate(_active):
            if active is reads:
                del _active[index]
                break


def reads_fingerprint(files: Iterable[Path], folders: Iterable[Path]) -> str:
    """Content of the recorded files and entry names of the recorded folders, as one digest."""
    return hash_value(
        {
            "files": [[str(path), _file_digest(path)] for path in sorted({Path(p) for p in files})],
            "folders": [[str(path), _folder_entries(path)] for path in sorted({Path(p) for p in folders})],
        }
    )


def _file_digest(path: Path) -> str:
    return hash_file(path) if path.is_file() else "missing"


def _folder_entries(path: Path) -> list[str] | str:
    return sorted(os.listdir(path)) if path.is_dir() else "missing"


def _install_hook() -> None:
    global _hook_installed, _ignored
    if _hook_installed:
        return
    _ignored = _folder_prefixes(_ignored_folders())
    sys.addaudithook(_audit)
    _hook_installed = True


def _ignored_folders() -> list[str]:
    """Where reads are covered by something else: the Python installation, libraries, this package."""
    folders = [sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev"]
    folders += getattr(site, "getsitepackages", list)()
    folders.append(site.getusersitepackages())
    folders.append(os.path.dirname(os.path.abspath(__file__)))
    return [folder for folder in folders if folder and os.path.dirname(os.path.abspath(folder)) != folder]


def _folder_prefixes(folders: Iterable[Any]) -> tuple[str, ...]:
    return tuple(os.path.join(os.path.abspath(os.fspath(folder)), "") for folder in folders)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Runs on every audit event of the process: return at once unless a recording is active."""
    if not _active or event not in _WATCHED_EVENTS:
        return
    with contextlib.suppress(Exception):  # never break the code being watched
        _record(event, args)


def _record(event: str, args: tuple[Any, ...]) -> None:
    if event == "open":
        path, mode, flags = args[:3]
        if _can_read(mode, flags) and (absolute := _absolute(path)) and _is_regular_file(absolute):
            _add(absolute, folder=False)
    elif event in ("os.listdir", "os.scandir"):
        path = args[0] if args and args[0] is not None else "."
        if (absolute := _absolute(path)) and os.path.isdir(absolute):
            _add(absolute, folder=True)
    elif args[3] is None:  # glob.glob/2: pathname, recursive, root_dir, dir_fd
        folder = os.path.join(os.fsdecode(args[2] or ""), _glob_folder(os.fsdecode(args[0])))
        if (absolute := _absolute(folder)) and os.path.isdir(absolute):
            _add(absolute, folder=True)


def _can_read(mode: str | None, flags: int | None) -> bool:
    """True when the open can read content that existed before (so not 'w+', which truncates first)."""
    if isinstance(mode, str):
        return not ("w" in mode or "x" in mode) and ("r" in mode or "+" in mode)
    if not isinstance(flags, int):
        return False
    access = flags & getattr(os, "O_ACCMODE", os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
    return access == os.O_RDONLY and not flags & (os.O_CREAT | os.O_TRUNC)


def _absolute(path: Any) -> str | None:
    if isinstance(path, int) or path is None:
        return None  # an open file descriptor: its path is unknown here
    return os.path.abspath(os.fsdecode(os.fspath(path)))


def _is_regular_file(path: str) -> bool:
    return not path.endswith(".pyc") and os.path.isfile(path)


def _glob_folder(pattern: str) -> str:
    """The folder a glob lists: the part of the pattern before the first component with a wildcard."""
    parts = pattern.replace(os.sep, "/").split("/")[:-1]
    literal = []
    for part in parts:
        if glob.has_magic(part):
            break
        literal.append(part)
    return "/".join(literal) if literal != [""] else "/"


def _add(path: str, *, folder: bool) -> None:
    if path.startswith(_ignored) or (path + os.sep).startswith(_ignored):
        return
    for reads, excluded in list(_active):
        if not (path.startswith(excluded) or (path + os.sep).startswith(excluded)):
            (reads.folders if folder else reads.files).add(Path(path))


class ReadsMemo:
    """Which files a piece of user code read the last time it ran, kept under a key (in the
    artifact store, else in memory), so a cache key can include their content without running
    the code again. The record is renewed whenever the code runs, so a change in what it reads
    (a new file listed in an index) shows up in the next key."""

    def __init__(self, store: Any = None):
        self._store = store  # anything with get_entry(key) / put_entry(key, record)
        self._memory: dict[str, dict[str, list[str]]] = {}

    def _get(self, key: str) -> dict[str, list[str]] | None:
        if self._store is None:
            return self._memory.get(key)
        entry = self._store.get_entry(key)
        return entry["reads"] if entry else None

    @contextmanager
    def recording(self, key: str, label: str) -> Iterator[None]:
        """Run the block, then remember what it read under key (not when it raises)."""
        exclude = [self._store.root] if self._store is not None else []
        with record_reads(exclude) as reads:
            yield
        if self._store is None:
            self._memory[key] = reads.as_record()
        else:
            self._store.put_entry(key, {"label": label, "reads": reads.as_record()})

    def fingerprint(self, key: str, label: str, run: Callable[[], object]) -> str:
        """Digest of what the code read last time; runs it (recording) when nothing is known."""
        record = self._get(key)
        if record is None:
            with self.recording(key, label):
                run()
            record = self._get(key)
        reads = Reads.from_record(record or {})
        return reads_fingerprint(reads.files, reads.folders)
