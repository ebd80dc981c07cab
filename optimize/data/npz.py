"""Arrays in a NumPy .npz file: inputs under one key (or one key per named input), integer
labels under another."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from optimize.data.base import ArrayDataset, DataContext, DataSourceSpec
from optimize.hashing import hash_file
from optimize.recipe.base import ExistingPath
from optimize.registries import DATA_SOURCES


@DATA_SOURCES.register("npz")
class NpzData(DataSourceSpec):
    """Arrays from a .npz file (read without pickle): inputs `x` [N, ...] (or one array per model
    input), labels `y` [N]."""

    source: Literal["npz"]
    path: ExistingPath = Field(description=".npz file, relative to the recipe")
    x_key: str | dict[str, str] = Field(
        "x",
        description="array holding the inputs, or {input name: array} for a model with several inputs",
    )
    y_key: str | None = Field("y", description="array holding integer labels; null for unlabelled data")

    @property
    def labeled(self) -> bool:  # type: ignore[override]
        return self.y_key is not None

    def load(self, context: DataContext) -> ArrayDataset:
        import numpy as np
        import torch

        input_keys = self.x_key if isinstance(self.x_key, dict) else {None: self.x_key}
        with np.load(self.path, allow_pickle=False) as arrays:
            missing = [
                k for k in (*input_keys.values(), self.y_key) if k is not None and k not in arrays.files
            ]
            if missing:
                raise ValueError(
                    f"{self.path} has no array {missing[0]!r}; it has: {', '.join(arrays.files)}"
                )
            named = {name: _tensor(arrays[key]) for name, key in input_keys.items()}
            inputs = named if isinstance(self.x_key, dict) else named[None]
            count = len(next(iter(named.values())))
            uneven = {name: len(t) for name, t in named.items() if len(t) != count}
            if uneven:
                raise ValueError(f"{self.path}: input arrays differ in length: {uneven} vs {count}")
            if self.y_key is None:
                labels = torch.full((count,), -1, dtype=torch.int64)
            else:  # integers as int64; others as stored, for the preflight to refuse, not cast
                stored = arrays[self.y_key]
                labels = torch.from_numpy(stored.astype("int64") if stored.dtype.kind in "iu" else stored)
        if len(labels) != count:
            raise ValueError(f"{self.path}: {count} inputs but {len(labels)} labels")
        return ArrayDataset(inputs, labels)

    def content_fingerprint(self, context: DataContext) -> Any:
        return hash_file(self.path)


def _tensor(array):
    """An input array as a tensor: floating point as float32, integers as they are."""
    import numpy as np
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.float() if tensor.is_floating_point() else tensor
