"""Arrays in a NumPy .npz file: inputs under one key, integer labels under another."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from optimize.data.base import ArrayDataset, DataContext, DataSourceSpec
from optimize.hashing import hash_file
from optimize.recipe.base import ExistingPath
from optimize.registries import DATA_SOURCES


@DATA_SOURCES.register("npz")
class NpzData(DataSourceSpec):
    """Arrays from a .npz file (read without pickle): inputs `x` [N, ...], labels `y` [N]."""

    source: Literal["npz"]
    path: ExistingPath = Field(description=".npz file, relative to the recipe")
    x_key: str = Field("x", description="array holding the inputs")
    y_key: str | None = Field("y", description="array holding integer labels; null for unlabelled data")

    @property
    def labeled(self) -> bool:  # type: ignore[override]
        return self.y_key is not None

    def load(self, context: DataContext) -> ArrayDataset:
        import numpy as np
        import torch

        with np.load(self.path, allow_pickle=False) as arrays:
            missing = [k for k in (self.x_key, self.y_key) if k is not None and k not in arrays.files]
            if missing:
                raise ValueError(
                    f"{self.path} has no array {missing[0]!r}; it has: {', '.join(arrays.files)}"
                )
            inputs = torch.from_numpy(np.ascontiguousarray(arrays[self.x_key]))
            if inputs.is_floating_point():
                inputs = inputs.float()
            if self.y_key is None:
                labels = torch.full((len(inputs),), -1, dtype=torch.int64)
            else:
                labels = torch.from_numpy(arrays[self.y_key].astype("int64"))
        if len(labels) != len(inputs):
            raise ValueError(f"{self.path}: {len(inputs)} inputs but {len(labels)} labels")
        return ArrayDataset(inputs, labels)

    def content_fingerprint(self, context: DataContext) -> Any:
        return hash_file(self.path)
