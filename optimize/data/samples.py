"""A role's samples as the model takes them: decoded (from the in-memory cache where it holds
them), augmented (train loaders only, seeded per sample) and finished (e.g. scaled and
normalised). Sources that decode files (image folders) keep the decoded, resized images apart
from the finishing, so the cache holds compact uint8 images and augmentation sees pixels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def sample_bytes(sample: Any) -> int:
    """Memory a decoded (input, label) pair holds in tensors."""
    if isinstance(sample, torch.Tensor):
        return sample.element_size() * sample.nelement()
    if isinstance(sample, dict):
        return sum(sample_bytes(v) for v in sample.values())
    if isinstance(sample, (tuple, list)):
        return sum(sample_bytes(v) for v in sample)
    return 0


def as_decoded(sample: Any) -> Any:
    """Samples pass from workers as they are (a module-level function pickles, a lambda not)."""
    return sample


def fill_cache(decoded: Dataset, budget_bytes: int, workers: int) -> list:
    """Decode samples in order (in `workers` processes) while they fit the budget; returns the
    cached prefix. Never holds more than `budget_bytes` of sample tensors."""
    cached: list = []
    used = 0
    loader = DataLoader(decoded, batch_size=None, num_workers=workers, collate_fn=as_decoded)
    for sample in loader:
        size = sample_bytes(sample)
        if used + size > budget_bytes:
            break
        cached.append(sample)
        used += size
    return cached


class Samples(Dataset):
    """Indexable by an index, or by (index, seed): the seed draws this sample's augmentation."""

    def __init__(
        self,
        decoded: Dataset,
        finish: Callable | None = None,
        cached: list | None = None,
        augment: Callable | None = None,
    ):
        self.decoded = decoded
        self.finish = finish
        self.cached = cached or []
        self.augment = augment

    def with_augment(self, augment: Callable | None) -> Samples:
        return Samples(self.decoded, self.finish, self.cached, augment)

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        x, y = self.cached[index] if index < len(self.cached) else self.decoded[index]
        if self.augment is not None and seed is not None:
            with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
                torch.manual_seed(seed)
                x = self.augment(x)
        return (self.finish(x) if self.finish is not None else x), y


class SeededSampler(Sampler):
    """Indices (shuffled with the loader's generator when asked) paired with a seed per sample,
    all drawn in the main process: augmentation repeats whatever the worker count."""

    def __init__(self, size: int, shuffle: bool, generator: torch.Generator):
        self.size = size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (
            torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        )
        seeds = torch.randint(0, 2**62, (self.size,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))
