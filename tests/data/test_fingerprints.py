"""A data role's fingerprint (part of every key that reads it) changes whenever what it yields
could change: the cap on eval samples, the loader's code and, for the user's own `python:`
datasets, their helper modules and every file they read."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from optimize.data.base import DataContext
from optimize.data.provider import DataProvider
from optimize.file_reads import ReadsMemo
from optimize.models.base import open_source
from optimize.recipe.model_spec import ModelSpec
from optimize.recipe.schema import DataSpec
from optimize.store import ArtifactStore

MODEL = {"source": "torchvision:resnet18", "input": {"name": "images", "shape": [1, 3, 8, 8]}}
DATASET = textwrap.dedent(
    """
    import numpy as np
    import torch

    from helpers import scale


    class FileDigits(torch.utils.data.Dataset):
        def __init__(self, folder):
            self.files = sorted(p for p in __import__("pathlib").Path(folder).glob("*.npy"))

        def __len__(self):
            return len(self.files)

        def __getitem__(self, index):  # opens one file per sample, as image datasets do
            return torch.from_numpy(np.load(self.files[index]) * scale()), 0


    def load(folder):
        return FileDigits(folder)
    """
)


def _write_dataset(root: Path, samples: int = 3) -> None:
    (root / "file_digits.py").write_text(DATASET)
    (root / "helpers.py").write_text("def scale():\n    return 1.0\n")
    (root / "samples").mkdir(exist_ok=True)
    for index in range(samples):
        np.save(root / "samples" / f"{index}.npy", np.full((3, 8, 8), index, np.float32))


def _provider(root: Path, reads: ReadsMemo, max_samples: int | None = None) -> DataProvider:
    data = {"eval": {"source": "python:file_digits:load", "args": {"folder": str(root / "samples")}}}
    spec = DataSpec.model_validate(data, context={"base_dir": root})
    source = open_source(ModelSpec.model_validate(MODEL, context={"base_dir": root}), root)
    return DataProvider({"eval": spec.eval}, DataContext(root, source, reads), limits={"eval": max_samples})


def test_python_data_fingerprint_follows_helpers_and_every_file_read(tmp_path):
    _write_dataset(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    first = _provider(tmp_path, ReadsMemo(store)).fingerprint("eval")
    assert _provider(tmp_path, ReadsMemo(store)).fingerprint("eval") == first

    np.save(tmp_path / "samples" / "1.npy", np.full((3, 8, 8), 7, np.float32))  # a file read per sample
    edited_sample = _provider(tmp_path, ReadsMemo(store)).fingerprint("eval")
    assert edited_sample != first

    np.save(tmp_path / "samples" / "3.npy", np.zeros((3, 8, 8), np.float32))  # a new file in the folder
    added = _provider(tmp_path, ReadsMemo(store)).fingerprint("eval")
    assert added != edited_sample

    (tmp_path / "helpers.py").write_text("def scale():\n    return 2.0\n")  # a helper module it imports
    assert _provider(tmp_path, ReadsMemo(store)).fingerprint("eval") != added


def test_remembered_reads_spare_loading_the_data_again(tmp_path):
    _write_dataset(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    _provider(tmp_path, ReadsMemo(store)).fingerprint("eval")
    again = _provider(tmp_path, ReadsMemo(store))
    again.fingerprint("eval")
    assert "eval" not in again._datasets  # answered from the remembered reads, nothing loaded


def test_the_eval_cap_is_one_sample_set_and_part_of_the_fingerprint(tmp_path):
    _write_dataset(tmp_path, samples=5)
    capped = _provider(tmp_path, ReadsMemo(), max_samples=2)
    assert capped.size("eval") == 2
    assert [int(capped.dataset("eval")[i][0][0, 0, 0]) for i in range(2)] == [0, 1]  # the first samples
    assert capped.fingerprint("eval") != _provider(tmp_path, ReadsMemo()).fingerprint("eval")
