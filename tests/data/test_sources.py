"""Data sources: the digits splits, npz without pickle, image folders, the user's own dataset,
subsetting and the checks against the model's input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from optimize.data.base import DataContext
from optimize.data.digits import SPLIT_SIZES, split_indices
from optimize.data.provider import DataProvider
from optimize.errors import RecipeError
from optimize.models.base import open_source
from optimize.recipe.model_spec import ModelSpec
from optimize.recipe.schema import DataSpec

MODEL = {"source": "torchvision:resnet18", "input": {"name": "images", "shape": [1, 3, 8, 8]}}


def provider(data: dict, tmp_path: Path, model: dict | None = None, **options) -> DataProvider:
    """The `data:` section as a provider, for a model (default MODEL) in tmp_path; options as
    DataProvider takes them (workers, cache, ...)."""
    context = {"base_dir": tmp_path}
    spec = DataSpec.model_validate(data, context=context)
    source = open_source(ModelSpec.model_validate(model or MODEL, context=context), tmp_path)
    return DataProvider(
        {role: getattr(spec, role) for role in ("train", "eval", "calibration")},
        DataContext(tmp_path, source),
        **options,
    )


def test_digits_splits_are_fixed_and_disjoint():
    total = sum(SPLIT_SIZES.values())
    parts = {split: set(split_indices(total, split)) for split in SPLIT_SIZES}
    assert {s: len(p) for s, p in parts.items()} == SPLIT_SIZES
    assert not (parts["train"] & parts["test"]) and not (parts["calibration"] & parts["test"])
    assert not (parts["train"] & parts["calibration"])
    assert split_indices(total, "test") == split_indices(total, "test")


def test_digits_are_resized_to_the_model_input(tmp_path):
    data = provider({"eval": {"source": "digits", "split": "test", "image_size": 8}}, tmp_path)
    x, y = data.dataset("eval")[0]
    assert tuple(x.shape) == (3, 8, 8) and 0 <= y <= 9
    assert data.size("eval") == 360


def test_samples_draw_a_seeded_subset_and_change_the_fingerprint(tmp_path):
    first = provider(
        {"calibration": {"source": "digits", "split": "calibration", "image_size": 8, "samples": 50}},
        tmp_path,
    )
    again = provider(
        {"calibration": {"source": "digits", "split": "calibration", "image_size": 8, "samples": 50}},
        tmp_path,
    )
    other = provider(
        {
            "calibration": {
                "source": "digits",
                "split": "calibration",
                "image_size": 8,
                "samples": 50,
                "seed": 1,
            }
        },
        tmp_path,
    )
    assert first.size("calibration") == 50
    assert torch.equal(first.dataset("calibration")[7][0], again.dataset("calibration")[7][0])
    assert (
        first.fingerprint("calibration")
        == again.fingerprint("calibration")
        != other.fingerprint("calibration")
    )


def test_more_samples_than_the_set_has_is_a_clear_error(tmp_path):
    data = provider(
        {"calibration": {"source": "digits", "split": "calibration", "image_size": 8, "samples": 5000}},
        tmp_path,
    )
    with pytest.raises(
        RecipeError, match=r"data.calibration.samples: 5000 asked for but the source has only 300"
    ):
        data.dataset("calibration")


def test_shape_mismatch_with_the_model_input_is_a_clear_error(tmp_path):
    data = provider({"eval": {"source": "digits", "split": "test", "image_size": 16}}, tmp_path)
    with pytest.raises(
        RecipeError, match=r"shape \[3, 16, 16\] but model input 'images' expects \[3, 8, 8\]"
    ):
        data.dataset("eval")


def test_npz_is_read_without_pickle(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.rand(20, 3, 8, 8).astype(np.float32), y=np.arange(20) % 10)
    data = provider({"eval": {"source": "npz", "path": "d.npz"}}, tmp_path)
    assert data.size("eval") == 20 and data.labeled("eval")
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}] * 3, dtype=object), y=np.arange(3))
    with pytest.raises(RecipeError, match="cannot load 'npz' data"):
        provider({"eval": {"source": "npz", "path": "bad.npz"}}, tmp_path).dataset("eval")


def test_npz_with_a_missing_key_names_the_keys_it_has(tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(RecipeError, match="has no array 'x'; it has: inputs"):
        provider({"eval": {"source": "npz", "path": "d.npz"}}, tmp_path).dataset("eval")


def test_image_folder_resizes_and_normalises(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(3):
            Image.fromarray((np.random.rand(20, 30, 3) * 255).astype(np.uint8)).save(
                tmp_path / "images" / label / f"{index}.png"
            )
    data = provider({"eval": {"source": "imagefolder", "path": "images", "resize": 8, "crop": 8}}, tmp_path)
    x, y = data.dataset("eval")[0]
    assert tuple(x.shape) == (3, 8, 8) and y in (0, 1) and data.size("eval") == 6


def test_python_dataset_comes_from_the_recipe_folder(tmp_path):
    (tmp_path / "my_data.py").write_text(
        "import torch\n"
        "def build(n=12):\n"
        "    return torch.utils.data.TensorDataset(torch.randn(n, 3, 8, 8), torch.arange(n) % 10)\n"
    )
    data = provider({"train": {"source": "python:my_data:build", "args": {"n": 12}}}, tmp_path)
    assert data.size("train") == 12


def test_empty_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "empty.py").write_text(
        "import torch\ndef build():\n    return torch.utils.data.TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0))\n"
    )
    with pytest.raises(RecipeError, match="yields no samples"):
        provider({"train": {"source": "python:empty:build"}}, tmp_path).dataset("train")
