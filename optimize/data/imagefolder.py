"""A folder of images in torchvision's ImageFolder layout: root/<class>/<image>."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from optimize.data.base import DataContext, DataSourceSpec
from optimize.hashing import hash_tree
from optimize.recipe.base import ExistingPath
from optimize.registries import DATA_SOURCES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@DATA_SOURCES.register("imagefolder")
class ImageFolderData(DataSourceSpec):
    """Images in class sub-folders (root/<class>/<file>), resized, centre-cropped and normalised."""

    decodes: ClassVar[bool] = True
    libraries: ClassVar[tuple[str, ...]] = ("torch", "torchvision", "pillow")

    source: Literal["imagefolder"]
    path: ExistingPath = Field(description="root folder, relative to the recipe")
    resize: int = Field(256, ge=1, description="shorter side after resizing")
    crop: int | None = Field(224, ge=1, description="centre crop side; null keeps the resized image")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="per-channel mean subtracted")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="per-channel std divided by")
    grayscale: bool = Field(False, description="convert to one channel")

    def load(self, context: DataContext):
        """Decoded samples: resized, cropped uint8 images [C, H, W] (what the cache holds)."""
        from torchvision import datasets
        from torchvision.transforms import v2

        steps = [v2.Resize(self.resize)]
        if self.crop:
            steps.append(v2.CenterCrop(self.crop))
        if self.grayscale:
            steps.append(v2.Grayscale(1))
        steps.append(v2.PILToTensor())
        return datasets.ImageFolder(str(self.path), transform=v2.Compose(steps))

    def finish(self, decoded):
        """uint8 pixels to floats in [0, 1], normalised."""
        import torch
        from torchvision.transforms.v2 import functional as F

        return F.normalize(F.to_dtype(decoded, torch.float32, scale=True), *self.normalisation())

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (self.mean[:1], self.std[:1]) if self.grayscale else (self.mean, self.std)

    def content_fingerprint(self, context: DataContext) -> Any:
        return hash_tree(self.path)
