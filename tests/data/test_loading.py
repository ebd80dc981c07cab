"""How samples are served: worker processes for every source, the decoded-image cache and its
budget, and train-time augmentation (validated at load, applied to train loaders only, the same
whatever the worker count)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from optimize.cli import main
from optimize.data.provider import DataProvider
from optimize.data.samples import fill_cache, sample_bytes
from tests.conftest import ASSETS, tiny_recipe_dict
from tests.data.test_sources import provider as data_provider
from tests.test_registries import _data_sources, _model_sources

IMAGE_MODEL = {"source": "python:tiny_models:tiny_cnn", "input": {"name": "images", "shape": [1, 3, 8, 8]}}
FLIP_AND_CROP = ["RandomHorizontalFlip", {"RandomResizedCrop": {"size": 8, "scale": [0.5, 1.0]}}]

UNPICKLABLE_DATASET = """
import torch

class Squares(torch.utils.data.Dataset):
    def __init__(self):
        self.make = lambda i: torch.full((3, 8, 8), float(i))  # a lambda: cannot be pickled

    def __len__(self):
        return 20

    def __getitem__(self, i):
        return self.make(i), i % 10

def build():
    return Squares()
"""


def provider(root: Path, data: dict, model: dict | None = None, **options) -> DataProvider:
    return data_provider(data, root, model or IMAGE_MODEL, **options)


def image_folder(root: Path, count: int, side: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / "images" / str(index % 2)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return root / "images"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copy(ASSETS / "tiny_models.py", tmp_path / "tiny_models.py")
    (tmp_path / "squares.py").write_text(UNPICKLABLE_DATASET)
    return tmp_path


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x if isinstance(x, torch.Tensor) else x["input_ids"], y) for x, y in loader]


@pytest.mark.parametrize("kind", ["digits", "npz", "imagefolder", "python", "text"])
def test_every_source_loads_the_same_batches_with_worker_processes(kind, root):
    data = {**_data_sources(root), "python": {"source": "python:squares:build"}}[kind]
    model = _model_sources(root)["huggingface"] if kind == "text" else IMAGE_MODEL
    in_process = provider(root, {"eval": data}, model, workers=0)
    with_workers = provider(root, {"eval": data}, model, workers=2)
    expected = batches(in_process.loader("eval", 4))
    loader = with_workers.loader("eval", 4)
    assert loader.num_workers == 2 and loader.persistent_workers
    for _ in range(2):  # the same workers serve a second pass
        got = batches(loader)
        assert len(got) == len(expected)
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected, strict=True)
        )


def test_an_unpicklable_dataset_is_served_in_process_where_workers_would_need_pickling(root):
    data = provider(root, {"train": {"source": "python:squares:build"}}, workers=1)
    torch.multiprocessing.set_start_method("forkserver", force=True)
    try:
        loader = data.loader("train", 4)
    finally:
        torch.multiprocessing.set_start_method("fork", force=True)
    assert loader.num_workers == 0
    assert len(data.notes) == 1 and "cannot be pickled" in data.notes[0] and "main process" in data.notes[0]
    assert len(batches(loader)) == 5


def test_auto_workers_go_where_samples_cost_work(root):
    image_folder(root, 6, 8)
    folder = {"source": "imagefolder", "path": "images", "resize": 8, "crop": 8}
    arrays = provider(root, {"train": {"source": "digits", "image_size": 8, "samples": 20}})
    assert arrays.workers("train") == 0  # in memory already: workers would only copy
    augmented = provider(
        root, {"train": {"source": "digits", "image_size": 8, "samples": 20, "augment": FLIP_AND_CROP}}
    )
    uncached = provider(root, {"train": folder}, cache="off")
    cached = provider(root, {"train": folder}, cache="on")
    cores = len(__import__("os").sched_getaffinity(0))
    assert augmented.workers("train") == uncached.workers("train") == cores - 1
    assert cached.workers("train") == 0 and cached.cached_samples("train") == 6


def test_the_cache_holds_decoded_images_within_its_budget(root):
    image_folder(root, 40, 64)  # 64×64×3 uint8: 12 KiB per image, 480 KiB in all
    folder = {"source": "imagefolder", "path": "images", "resize": 64, "crop": 64}
    model = {**IMAGE_MODEL, "input": {"name": "images", "shape": [1, 3, 64, 64]}}
    full = provider(root, {"train": folder}, model, cache="on", cache_mb=1)
    assert full.cached_samples("train") == 40
    uncached = provider(root, {"train": folder}, model, cache="off")
    cached_x, _ = full.dataset("train")[3]
    fresh_x, _ = uncached.dataset("train")[3]
    assert torch.equal(cached_x, fresh_x) and cached_x.dtype == torch.float32

    decoded = full.dataset("train").decoded
    budget = 100_000  # room for 8 images of 12,288 bytes
    held = fill_cache(decoded, budget, workers=0)
    assert len(held) == 8 and sum(sample_bytes(s) for s in held) <= budget

    small = provider(root, {"train": folder, "eval": folder}, model, cache="auto", cache_mb=1)
    small._cache_budget = budget  # the smallest recipe budget is 1 MiB; the rule is the same
    assert small.cached_samples("train") == 0  # auto: all or nothing
    assert "exceed the cache budget" in small.notes[0]
    partial = provider(root, {"train": folder}, model, cache="on")
    partial._cache_budget = budget
    assert partial.cached_samples("train") == 8


def test_augmentation_reaches_train_loaders_only_and_repeats_whatever_the_workers(root):
    image_folder(root, 12, 8)
    folder = {"source": "imagefolder", "path": "images", "resize": 8, "crop": 8}
    data = {"train": {**folder, "augment": FLIP_AND_CROP}, "eval": folder}
    serial = provider(root, data, workers=0)
    parallel = provider(root, data, workers=2)

    plain = torch.stack([serial.dataset("train")[i][0] for i in range(12)])
    unaugmented = torch.cat([x for x, _ in serial.loader("train", 4)])
    assert torch.equal(unaugmented, plain)  # stages other than train/distill get the samples as they are
    first = torch.cat([x for x, _ in serial.loader("train", 4, seed=3, augment=True)])
    assert not torch.equal(first, plain)
    again = torch.cat([x for x, _ in parallel.loader("train", 4, seed=3, augment=True)])
    assert torch.equal(first, again)
    eval_plain = torch.cat([x for x, _ in serial.loader("eval", 4)])
    assert torch.equal(eval_plain, torch.cat([x for x, _ in serial.loader("eval", 4, augment=True)]))


@pytest.mark.parametrize(
    "augment, fragments",
    [
        (
            ["RandomFlip"],
            ["data.train.augment[0]", "unknown augmentation 'RandomFlip'", "RandomHorizontalFlip", "valid:"],
        ),
        ([{"RandomResizedCrop": {"sise": 8}}], ["data.train.augment[0]", "RandomResizedCrop(sise=8)"]),
        ([{"Compose": {}}], ["unknown augmentation 'Compose'"]),
    ],
)
def test_augmentation_steps_are_checked_against_torchvision(augment, fragments, write_recipe):
    recipe = tiny_recipe_dict()
    recipe["data"]["train"]["augment"] = augment
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_eval_and_calibration_data_refuse_augmentation(write_recipe):
    recipe = tiny_recipe_dict()
    recipe["data"]["calibration"]["augment"] = ["RandomHorizontalFlip"]
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    assert "data.calibration: augment: augmentation applies to data.train only" in result.output
