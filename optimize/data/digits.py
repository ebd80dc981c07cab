"""scikit-learn's handwritten digits (1,797 8×8 images that ship inside the package)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from optimize.data.base import ArrayDataset, DataContext, DataSourceSpec
from optimize.registries import DATA_SOURCES

SPLIT_SEED = 20240517  # fixed: the splits are part of the data set's definition, not a knob
SPLIT_SIZES = {"train": 1137, "calibration": 300, "test": 360}


def load_digits_arrays():
    """(images [1797, 8, 8] in 0-16, labels [1797]) as scikit-learn's load_digits returns them,
    read from the file scikit-learn ships without importing scikit-learn (1.5 s per process)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    shipped = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not shipped.is_file():  # another layout: let scikit-learn find it
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    data = np.loadtxt(shipped, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def split_indices(total: int, split: str) -> list[int]:
    """Disjoint, fixed train / calibration / test index lists."""
    import numpy as np

    order = np.random.default_rng(SPLIT_SEED).permutation(total)
    start = 0
    for name, size in SPLIT_SIZES.items():
        if name == split:
            return order[start : start + size].tolist()
        start += size
    raise ValueError(split)


@DATA_SOURCES.register("digits")
class DigitsData(DataSourceSpec):
    """scikit-learn digits, resized and replicated to the model's input; fixed disjoint splits
    (train 1137, calibration 300, test 360)."""

    libraries: ClassVar[tuple[str, ...]] = ("torch", "scikit-learn")

    source: Literal["digits"]
    split: Literal["train", "calibration", "test"] = Field("train", description="which fixed split")
    image_size: int = Field(32, ge=8, le=512, description="side of the square image fed to the model")
    channels: Literal[1, 3] = Field(3, description="3 replicates the grey channel for RGB models")

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (0.5,) * self.channels, (0.5,) * self.channels

    def load(self, context: DataContext) -> ArrayDataset:
        import torch
        import torch.nn.functional as F

        all_images, all_labels = load_digits_arrays()
        index = split_indices(len(all_labels), self.split)
        images = torch.tensor(all_images[index], dtype=torch.float32).unsqueeze(1) / 16.0
        images = F.interpolate(
            images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        mean, std = self.normalisation()
        images = (images.clamp(0, 1) - mean[0]) / std[0]
        images = images.expand(-1, self.channels, -1, -1).contiguous()
        labels = torch.tensor(all_labels[index], dtype=torch.int64)
        return ArrayDataset(images, labels)
