"""A model with two inputs and two outputs, for `recipes/masked-digits-two-inputs.yaml`: a digit
image plus a mask of the pixels a sensor actually saw (the rest occluded), as multi-sensor and
masked-input models take them; it returns class logits and the pooled features behind them.

The data are scikit-learn's digits (shipped in the package) with one seeded random occlusion
rectangle per image, so the mask carries information the model needs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from optimize.data.digits import load_digits_arrays, split_indices


class MaskedDigitNet(nn.Module):
    """forward(image, mask) -> (logits, features): the image is seen through its mask, and the
    mask itself is a second channel, so the model can tell "dark" from "not seen"."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(torch.cat([image * mask, mask], dim=1))
        return self.classifier(features), features


class MaskedDigits(Dataset):
    """({"image": [1, 16, 16], "mask": [1, 16, 16]}, label) samples of one fixed digits split."""

    def __init__(self, split: str, image_size: int = 16, seed: int = 0):
        images, labels = load_digits_arrays()
        index = split_indices(len(labels), split)
        pixels = torch.tensor(images[index], dtype=torch.float32).unsqueeze(1) / 16.0
        self.images = nn.functional.interpolate(pixels, size=(image_size, image_size), mode="bilinear")
        self.masks = occlusion_masks(len(index), image_size, np.random.default_rng([seed, len(index)]))
        self.labels = torch.tensor(labels[index], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return {"image": self.images[i], "mask": self.masks[i]}, int(self.labels[i])


def occlusion_masks(count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """1 where seen, 0 inside one random rectangle of a quarter to a half of each side."""
    masks = np.ones((count, 1, size, size), dtype=np.float32)
    for mask in masks:
        height, width = rng.integers(size // 4, size // 2 + 1, size=2)
        top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
        mask[0, top : top + height, left : left + width] = 0.0
    return torch.from_numpy(masks)


def masked_digits(split: str = "train", image_size: int = 16, seed: int = 0) -> MaskedDigits:
    return MaskedDigits(split, image_size, seed)
