"""What every data source shares: the spec fields common to all and the load interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PositiveInt

from optimize.data.augment import AugmentSteps
from optimize.file_reads import ReadsMemo
from optimize.recipe.base import StrictModel

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from optimize.models.base import ModelSource


@dataclass(frozen=True)
class DataContext:
    """What a data source may need besides its own spec."""

    base_dir: Path
    model_source: ModelSource
    reads: ReadsMemo = field(default_factory=ReadsMemo)  # files user code read, by key


class DataSourceSpec(StrictModel):
    """A dataset of (input, label) pairs; `input` is a tensor or a dict of named tensors."""

    samples: PositiveInt | None = Field(None, description="use a seeded random subset of this many samples")
    seed: int = Field(0, description="seed of the subset drawn when `samples` is set")
    augment: AugmentSteps = Field(
        default_factory=list,
        description="data.train only: torchvision transforms.v2 steps applied to each training sample "
        "(train and distill), e.g. [RandomResizedCrop: {size: 32, scale: [0.6, 1.0]}, RandomHorizontalFlip]",
    )

    labeled: ClassVar[bool] = True
    # True when each access decodes a file: the in-memory cache (data.cache) holds decoded samples
    # and `workers: auto` decodes in worker processes.
    decodes: ClassVar[bool] = False
    # True when loading runs user code that may read any file: the files it read last time are
    # remembered and their content is part of the fingerprint.
    reads_unknown_files: ClassVar[bool] = False
    libraries: ClassVar[tuple[str, ...]] = ("torch",)  # their versions are in the fingerprint

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]  # type: ignore[attr-defined]

    def load(self, context: DataContext) -> Dataset:
        raise NotImplementedError

    def finish(self, decoded):
        """A decoded sample as the model takes it; load() yields decoded samples. Sources whose
        decoded form is already final return it as it is."""
        return decoded

    def content_fingerprint(self, context: DataContext) -> Any:
        """What the spec alone does not pin down: the content of files it reads."""
        return None

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) per channel the source applies to [0, 1] images, for clients that must
        prepare raw inputs the same way; None where it is not an image source or not known."""
        return None


class ArrayDataset:
    """Indexable (x, y) pairs over pre-made tensors."""

    def __init__(self, inputs, labels):
        self.inputs = inputs
        self.labels = labels

    def __len__(self) -> int:
        if isinstance(self.inputs, dict):
            return len(next(iter(self.inputs.values())))
        return len(self.inputs)

    def __getitem__(self, index: int):
        """The label as stored: a float one stays float, for the preflight to refuse before a
        classifier is trained on it, rather than being cast to a class index here."""
        if isinstance(self.inputs, dict):
            x = {name: values[index] for name, values in self.inputs.items()}
        else:
            x = self.inputs[index]
        return x, self.labels[index]
