"""Loads the recipe's data roles (train / eval / calibration) once, checks them against the
model's inputs, and hands them out as torch loaders or NumPy feeds for the runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from optimize.data.base import DataContext, DataSourceSpec
from optimize.errors import RecipeError
from optimize.hashing import hash_value

if TYPE_CHECKING:
    import numpy as np

    from optimize.recipe.model_spec import InputSpec

ROLES = ("train", "eval", "calibration")


def subset_indices(total: int, samples: int | None, seed: int) -> list[int] | None:
    """Seeded subset of `samples` indices out of `total` (None: use everything)."""
    if samples is None or samples >= total:
        return None
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(total, size=samples, replace=False).tolist())


class DataProvider:
    def __init__(self, specs: dict[str, DataSourceSpec | None], context: DataContext):
        self._specs = specs
        self._context = context
        self._datasets: dict[str, object] = {}
        self._fingerprints: dict[str, str] = {}

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
            self._fingerprints[role] = hash_value(
                {"spec": spec.model_dump(mode="json"), "content": spec.content_fingerprint(self._context)}
            )
        return self._fingerprints[role]

    def dataset(self, role: str):
        if role not in self._datasets:
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
            if indices is not None:
                import torch.utils.data

                dataset = torch.utils.data.Subset(dataset, indices)
            check_sample(role, dataset[0][0], self._context.model_source.inputs())
            bad = non_finite_samples(dataset)
            if bad:
                raise RecipeError(
                    f"data.{role}: {bad} samples contain NaN or infinite values; clean the data first"
                )
            self._datasets[role] = dataset
        return self._datasets[role]

    def size(self, role: str) -> int:
        return len(self.dataset(role))

    def loader(self, role: str, batch_size: int, shuffle: bool = False, seed: int = 0):
        import torch
        from torch.utils.data import DataLoader

        generator = torch.Generator().manual_seed(seed)
        return DataLoader(self.dataset(role), batch_size=batch_size, shuffle=shuffle, generator=generator)

    def numpy_batches(self, role: str, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Batches as runtime feeds: {input name: array} plus the labels (-1 where unlabelled)."""
        names = [spec.name for spec in self._context.model_source.inputs()]
        for inputs, labels in self.loader(role, batch_size):
            yield as_feeds(inputs, names), labels.numpy()


def dataset_labels(dataset):
    """All labels of a dataset, read without loading inputs where the dataset keeps them apart."""
    import numpy as np
    import torch.utils.data

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
    if labels.size and labels.min() < -1:
        raise RecipeError(f"data.{role}: labels must be class indices ≥ 0 (found {int(labels.min())})")
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


def as_feeds(inputs, names: list[str]) -> dict:
    """A batch from a loader (tensor or dict of tensors) as {input name: NumPy array}."""
    if isinstance(inputs, dict):
        return {name: inputs[name].numpy() for name in names}
    return {names[0]: inputs.numpy()}


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
