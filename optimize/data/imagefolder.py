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

    libraries: ClassVar[tuple[str, ...]] = ("torch", "torchvision", "pillow")

    source: Literal["imagefolder"]
    path: ExistingPath = Field(description="root folder, relative to the recipe")
    resize: int = Field(256, ge=1, description="shorter side after resizing")
    crop: int | None = Field(224, ge=1, description="centre crop side; null keeps the resized image")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="per-channel mean subtracted")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="per-channel std divided by")
    grayscale: bool = Field(False, description="convert to one channel")

    def load(self, context: DataContext):
        from torchvision import datasets, transforms

        steps = [transforms.Resize(self.resize)]
        if self.crop:
            steps.append(transforms.CenterCrop(self.crop))
        if self.grayscale:
            steps.append(transforms.Grayscale(1))
        steps.append(transforms.ToTensor())
        steps.append(transforms.Normalize(*self.normalisation()))
        return datasets.ImageFolder(str(self.path), transform=transforms.Compose(steps))

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (self.mean[:1], self.std[:1]) if self.grayscale else (self.mean, self.std)

    def content_fingerprint(self, context: DataContext) -> Any:
        return hash_tree(self.path)
