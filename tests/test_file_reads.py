"""Discovery of the files and folders user code reads, and the fingerprint of what was read."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

from optimize.file_reads import Reads, reads_fingerprint, record_reads


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.txt").write_text("beta")
    np.savez(folder / "arrays.npz", x=np.arange(3))
    return folder


def test_open_is_recorded(data: Path) -> None:
    with record_reads() as reads, open(data / "a.txt") as handle:
        handle.read()
    assert reads.files == {data / "a.txt"}
    assert reads.folders == set()


def test_relative_paths_are_made_absolute(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(data)
    with record_reads() as reads:
        Path("a.txt").read_bytes()
    assert reads.files == {data / "a.txt"}


def test_numpy_load_is_recorded(data: Path) -> None:
    with record_reads() as reads, np.load(data / "arrays.npz") as arrays:
        assert arrays["x"].tolist() == [0, 1, 2]
    assert data / "arrays.npz" in reads.files


def test_pathlib_read_text_is_recorded(data: Path) -> None:
    with record_reads() as reads:
        assert (data / "b.txt").read_text() == "beta"
    assert reads.files == {data / "b.txt"}


def test_os_listdir_and_scandir_are_recorded(data: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with record_reads() as reads:
        os.listdir(data)
        with os.scandir(other) as entries:
            list(entries)
    assert reads.folders == {data, other}
    assert reads.files == set()


def test_glob_is_recorded(data: Path) -> None:
    with record_reads() as by_pathlib:
        assert len(list(data.glob("*.txt"))) == 2
    with record_reads() as by_glob:
        assert len(glob.glob(str(data / "*.txt"))) == 2
    with record_reads() as by_root_dir:
        assert len(glob.glob("*.txt", root_dir=data)) == 2
    assert data in by_pathlib.folders
    assert data in by_glob.folders
    assert by_root_dir.folders == {data}


def test_writing_is_not_a_read(data: Path) -> None:
    with record_reads() as reads:
        (data / "new.txt").write_text("new")
        with open(data / "a.txt", "a") as handle:
            handle.write("more")
        with open(data / "b.txt", "w+") as handle:
            handle.write("over")
    assert reads.files == set()


def test_files_of_the_python_installation_are_not_recorded() -> None:
    with record_reads() as reads:
        Path(os.__file__).read_bytes()
    assert reads.files == set()


def test_nothing_is_recorded_outside_the_block(data: Path) -> None:
    with record_reads() as reads:
        pass
    (data / "a.txt").read_text()
    os.listdir(data)
    assert reads.files == set() and reads.folders == set()


def test_nested_recordings_both_see_reads(data: Path) -> None:
    with record_reads() as outer:
        with record_reads() as inner:
            (data / "a.txt").read_text()
        (data / "b.txt").read_text()
    assert inner.files == {data / "a.txt"}
    assert outer.files == {data / "a.txt", data / "b.txt"}


def test_exclude_leaves_out_files_and_folders_below_it(data: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("kept")
    with record_reads(exclude=[data]) as reads:
        (data / "a.txt").read_text()
        os.listdir(data)
        kept.read_text()
    assert reads.files == {kept}
    assert reads.folders == set()


def test_missing_files_and_directories_are_not_recorded(data: Path) -> None:
    with record_reads() as reads:
        with pytest.raises(FileNotFoundError):
            (data / "absent.txt").read_text()
        with pytest.raises(IsADirectoryError):
            data.read_text()
    assert reads.files == set()


def test_fingerprint_follows_content_listing_and_deletion(data: Path) -> None:
    with record_reads() as reads:
        (data / "a.txt").read_text()
        os.listdir(data)
    before = reads_fingerprint(reads.files, reads.folders)
    assert reads_fingerprint(reads.files, reads.folders) == before

    (data / "a.txt").write_text("changed")
    changed = reads_fingerprint(reads.files, reads.folders)
    assert changed != before

    (data / "c.txt").write_text("gamma")
    added = reads_fingerprint(reads.files, reads.folders)
    assert added != changed

    (data / "a.txt").unlink()
    assert reads_fingerprint(reads.files, reads.folders) != added


def test_record_round_trip(data: Path) -> None:
    with record_reads() as reads:
        (data / "a.txt").read_text()
        os.listdir(data)
    record = reads.as_record()
    assert record == {"files": [str(data / "a.txt")], "folders": [str(data)]}
    restored = Reads.from_record(record)
    assert restored == reads
    assert reads_fingerprint(restored.files, restored.folders) == reads_fingerprint(
        reads.files, reads.folders
    )
