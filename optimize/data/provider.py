"""Loads the recipe's data roles (train / eval / calibration) once, checks them against the
model's inputs, and hands them out as torch loaders (worker processes, decoded-image cache,
train-time augmentation) or NumPy feeds for the runtimes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from optimize.code_fingerprint import code_fingerprint
from optimize.data.base import DataContext, DataSourceSpec
from optimize.errors import RecipeError
from optimize.hashing import hash_value
from optimize.versions import library_versions

if TYPE_CHECKING:
    import numpy as np

    from optimize.data.samples import Samples
    from optimize.model_io import ModelIO
    from optimize.recipe.model_spec import InputSpec
    from optimize.recipe.schema import Recipe

ROLES = ("train", "eval", "calibration")


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def subset_indices(total: int, samples: int | None, seed: int) -> list[int] | None:
    """Seeded subset of `samples` indices out of `total` (None: use everything)."""
    if samples is None or samples >= total:
        return None
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(total, size=samples, replace=False).tolist())


class DataProvider:
    """`limits` caps a role at its first N samples (after any `samples` subset): the recipe's
    `evaluation.max_samples` caps data.eval, so every accuracy in a run, torch or ONNX, step or
    target, early stopping included, is scored on one and the same sample set.

    `workers`, `cache` and `cache_mb` are the recipe's data.workers, data.cache and
    data.cache_mb. None of them is in a fingerprint: they change how fast samples come, never
    which (augmentation is seeded per sample in the main process, whatever the worker count)."""

    def __init__(
        self,
        specs: dict[str, DataSourceSpec | None],
        context: DataContext,
        limits: dict[str, int | None] | None = None,
        workers: int | Literal["auto"] = "auto",
        cache: Literal["auto", "on", "off"] = "auto",
        cache_mb: int = 2048,
    ):
        self._specs = specs
        self._context = context
        self._limits = {role: limit for role, limit in (limits or {}).items() if limit is not None}
        self._workers = workers
        self._cache = cache
        self._cache_budget = cache_mb * 2**20
        self._cache_used = 0
        self._datasets: dict[str, Samples] = {}  # what the model takes; loading imports torch
        self._fingerprints: dict[str, str] = {}
        self.notes: list[str] = []  # what the user should know about how data is served
        self.load_seconds: dict[str, float] = {}  # loading, checking and caching each role

    @classmethod
    def for_recipe(cls, recipe: Recipe, context: DataContext) -> DataProvider:
        """The recipe's data roles, served as its `data:` section says, eval capped at
        `evaluation.max_samples`."""
        data = recipe.data
        return cls(
            {role: getattr(data, role) for role in ROLES},
            context,
            limits={"eval": recipe.evaluation.max_samples},
            workers=data.workers,
            cache=data.cache,
            cache_mb=data.cache_mb,
        )

    def has(self, role: str) -> bool:
        return self._specs.get(role) is not None

    def spec(self, role: str) -> DataSourceSpec:
        spec = self._specs.get(role)
        if spec is None:
            raise RecipeError(f"data.{role}: this recipe needs a '{role}' data source")
        return spec

    def labeled(self, role: str) -> bool:
        return self.spec(role).labeled

    def fingerprint(self, role: str) -> str:
        """Changes whenever the samples the role yields could change."""
        if role not in self._fingerprints:
            spec = self.spec(role)
            files_read = None
            if spec.reads_unknown_files:
                files_read = self._context.reads.fingerprint(
                    self._reads_key(role), f"files read by data.{role}", lambda: self.dataset(role)
                )
            self._fingerprints[role] = hash_value(
                {
                    "spec": spec.model_dump(mode="json"),
                    "content": spec.content_fingerprint(self._context),
                    "libraries": library_versions(spec.libraries),
                    "files_read": files_read,
                    "limit": self._limits.get(role),
                    "code": code_fingerprint(type(spec).__module__, __name__),
                }
            )
        return self._fingerprints[role]

    def _reads_key(self, role: str) -> str:
        """Where the files a role's loader read are remembered: per spec and loader code."""
        spec = self.spec(role)
        return hash_value(
            {
                "kind": "files-read",
                "spec": spec.model_dump(mode="json"),
                "content": spec.content_fingerprint(self._context),
            }
        )

    def dataset(self, role: str):
        if role not in self._datasets:
            spec = self.spec(role)
            if not spec.reads_unknown_files:
                self._datasets[role] = self._load(role)
            else:
                with self._context.reads.recording(self._reads_key(role), f"files read by data.{role}"):
                    dataset = self._load(role)
                    for index in range(len(dataset)):  # user datasets may open a file per sample
                        dataset[index]
                self._datasets[role] = dataset
        return self._datasets[role]

    def _load(self, role: str) -> Samples:
        """The role's samples: loaded, subset, capped, cached and checked against the model's inputs."""
        import time

        started = time.perf_counter()
        spec = self.spec(role)
        try:
            dataset = spec.load(self._context)
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise RecipeError(f"data.{role}: cannot load '{spec.kind}' data: {exc}") from exc
        total = len(dataset)
        if total == 0:
            raise RecipeError(f"data.{role}: the '{spec.kind}' source yields no samples")
        if spec.samples is not None and spec.samples > total:
            raise RecipeError(
                f"data.{role}.samples: {spec.samples} asked for but the source has only {total}; "
                f"use at most {total} or leave `samples` out"
            )
        indices = subset_indices(total, spec.samples, spec.seed)
        limit = self._limits.get(role)
        if limit is not None and limit < (total if indices is None else len(indices)):
            indices = (list(range(total)) if indices is None else indices)[:limit]
        if indices is not None:
            import torch.utils.data

            dataset = torch.utils.data.Subset(dataset, indices)
        from optimize.data.samples import Samples

        dataset = Samples(dataset, spec.finish, self._fill_cache(role, dataset))
        check_sample(role, dataset[0][0], self._context.model_source.inputs())
        bad = non_finite_samples(dataset)
        if bad:
            raise RecipeError(
                f"data.{role}: {bad} samples contain NaN or infinite values; clean the data first"
            )
        self.load_seconds[role] = time.perf_counter() - started
        return dataset

    def _fill_cache(self, role: str, decoded) -> list:
        """Decoded samples held in memory for sources that decode files: `auto` when the whole
        role fits what is left of the budget, `on` as many as fit, `off` none."""
        from optimize.data.samples import fill_cache, sample_bytes

        spec = self.spec(role)
        if not spec.decodes or self._cache == "off":
            return []
        left = self._cache_budget - self._cache_used
        needed = sample_bytes(decoded[0]) * len(decoded)
        if self._cache == "auto" and needed > left:
            self.notes.append(
                f"data.{role}: {needed / 2**20:.0f} MiB of decoded samples exceed the cache budget "
                f"({left / 2**20:.0f} MiB left of data.cache_mb); decoding every epoch"
            )
            return []
        cached = fill_cache(decoded, left, self._decode_workers())
        self._cache_used += sum(sample_bytes(sample) for sample in cached)
        return cached

    def _decode_workers(self) -> int:
        return self._workers if self._workers != "auto" else max(available_cores() - 1, 0)

    def cached_samples(self, role: str) -> int:
        return len(self.dataset(role).cached)

    def workers(self, role: str) -> int:
        """Loader processes for a role. `auto` is cores − 1 where a sample costs work to make
        (decoding files not in the cache, user code, augmentation) and 0 for in-memory arrays,
        where workers would only add copying."""
        if self._workers != "auto":
            return self._workers
        spec = self.spec(role)
        busy = (
            spec.reads_unknown_files
            or bool(spec.augment)
            or (spec.decodes and self.cached_samples(role) < self.size(role))
        )
        return self._decode_workers() if busy else 0

    def _usable_workers(self, role: str, dataset) -> int:
        """Worker processes get the dataset by fork, or pickled under other start methods: a
        dataset that cannot be pickled is then served from the main process (said in notes)."""
        import pickle

        import torch.multiprocessing

        workers = self.workers(role)
        if workers and torch.multiprocessing.get_start_method() != "fork":
            try:
                pickle.dumps(dataset)
            except Exception as exc:  # user datasets fail in many ways; each means "cannot pickle"
                note = (
                    f"data.{role}: the dataset cannot be pickled for worker processes "
                    f"({type(exc).__name__}: {exc}); loading in the main process"
                )
                if note not in self.notes:
                    self.notes.append(note)
                return 0
        return workers

    def size(self, role: str) -> int:
        return len(self.dataset(role))

    def loader(
        self,
        role: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment: bool = False,
        pin_memory: bool = False,
    ):
        """Batches of a role; `augment` applies the role's `augment` steps (train and distill
        only), each sample with its own seed drawn from `seed`."""
        import torch
        from torch.utils.data import DataLoader

        from optimize.data.augment import build_augment
        from optimize.data.samples import SeededSampler

        generator = torch.Generator().manual_seed(seed)
        dataset = self.dataset(role)
        augmentation = build_augment(self.spec(role).augment) if augment else None
        if augmentation is not None:
            dataset = dataset.with_augment(augmentation)
            order = {"sampler": SeededSampler(len(dataset), shuffle, generator)}
        else:
            order = {"shuffle": shuffle, "generator": generator}
        workers = self._usable_workers(role, dataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin_memory,
            **order,
        )

    @property
    def model_io(self) -> ModelIO:
        """How the model these data feed takes them and what it returns."""
        return self._context.model_source.io

    def numpy_batches(self, role: str, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Batches as runtime feeds: {input name: array} plus the labels (-1 where unlabelled)."""
        for inputs, labels in self.loader(role, batch_size):
            yield self.model_io.feeds(inputs), labels.numpy()

    def save_feeds(self, role: str, path: Path) -> None:
        """The role's samples as arrays in one .npz file (`input:<name>` and `labels`), for
        evaluation processes that import no torch."""
        import numpy as np

        inputs: dict[str, list] = {}
        labels = []
        for feeds, batch_labels in self.numpy_batches(role, 256):
            for name, value in feeds.items():
                inputs.setdefault(name, []).append(value)
            labels.append(batch_labels)
        arrays = {f"input:{name}": np.concatenate(parts) for name, parts in inputs.items()}
        np.savez(path, labels=np.concatenate(labels), **arrays)


def dataset_labels(dataset):
    """All labels of a dataset, read without loading inputs where the dataset keeps them apart."""
    import numpy as np
    import torch.utils.data

    from optimize.data.samples import Samples

    if isinstance(dataset, Samples):
        return dataset_labels(dataset.decoded)
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    for attribute in ("labels", "targets"):
        labels = getattr(dataset, attribute, None)
        if labels is not None:
            return np.asarray(labels)
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) > 1:
        return dataset.tensors[1].numpy()
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])


def check_outputs_fit_labels(role: str, outputs_per_sample: int, labels) -> None:
    """A classifier must output at least one value per class that occurs in the labels."""
    import numpy as np

    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise RecipeError(
            f"data.{role}: labels must be class indices ≥ 0 (found {int(labels.min())}); "
            "for data without labels set labeled: false (python) or y_key: null (npz)"
        )
    highest = int(labels.max()) if labels.size else -1
    if highest >= outputs_per_sample:
        raise RecipeError(
            f"data.{role}: labels go up to {highest} but the model outputs {outputs_per_sample} values per sample; "
            f"give the model {highest + 1} classes (e.g. model.args.num_classes: {highest + 1}) or use task: embedding"
        )


def non_finite_samples(dataset) -> int:
    """Samples holding NaN or ±inf, for datasets that keep their inputs in memory (others: 0)."""
    import torch
    import torch.utils.data

    from optimize.data.samples import Samples

    if isinstance(dataset, Samples):
        dataset = dataset.decoded  # finishing (normalising) keeps finite values finite
    indices = None
    if isinstance(dataset, torch.utils.data.Subset):
        dataset, indices = dataset.dataset, dataset.indices
    inputs = getattr(dataset, "inputs", None)
    if inputs is None and isinstance(dataset, torch.utils.data.TensorDataset):
        inputs = dataset.tensors[0]
    tensors = list(inputs.values()) if isinstance(inputs, dict) else [inputs] if inputs is not None else []
    bad = None
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            rows = ~torch.isfinite(tensor.reshape(len(tensor), -1)).all(dim=1)
            bad = rows if bad is None else bad | rows
    if bad is None:
        return 0
    return int(bad[indices].sum()) if indices is not None else int(bad.sum())


def check_sample(role: str, sample, inputs: list[InputSpec]) -> None:
    """The data's per-sample shape must match the model's input (batch axis excluded)."""
    samples = sample if isinstance(sample, dict) else {inputs[0].name: sample}
    for spec in inputs:
        if spec.name not in samples:
            raise RecipeError(
                f"data.{role}: samples have no input '{spec.name}'; they have: {', '.join(samples)}"
            )
        got = tuple(samples[spec.name].shape)
        expected = tuple(spec.shape[1:])
        fixed = [axis - 1 for axis in range(1, len(spec.shape)) if axis not in spec.dynamic_axes]
        if len(got) != len(expected) or any(got[axis] != expected[axis] for axis in fixed):
            raise RecipeError(
                f"data.{role}: samples have shape {list(got)} but model input '{spec.name}' expects "
                f"{list(expected)} (model.input.shape without the batch axis)"
            )
