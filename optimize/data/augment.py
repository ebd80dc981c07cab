"""Train-time augmentation: torchvision `transforms.v2` steps named in the recipe
(`data.train.augment`), checked against torchvision when the recipe loads, and applied per sample
with a seed of its own, so a run augments the same way whatever the number of loader workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from collections.abc import Callable

# v2 transforms that are no per-image augmentation a recipe can spell: containers of other
# transforms, batch mixing (needs labels), crops returning several images, type conversions (the
# pipeline does them), box / key-point / video helpers, and Normalize (the source normalises).
NOT_AUGMENTATIONS = frozenset(
    {
        "Compose", "RandomApply", "RandomChoice", "RandomOrder", "Lambda", "CutMix", "MixUp",
        "FiveCrop", "TenCrop", "ToPILImage", "ToTensor", "PILToTensor", "ToImage", "ToPureTensor",
        "ConvertImageDtype", "ToDtype", "RGB", "ClampBoundingBoxes", "ClampKeyPoints",
        "ConvertBoundingBoxFormat", "SanitizeBoundingBoxes", "SanitizeKeyPoints", "SetClampingMode",
        "LinearTransformation", "Normalize", "UniformTemporalSubsample", "Identity",
    }
)  # fmt: skip


def augmentation_names() -> list[str]:
    """The torchvision.transforms.v2 classes a recipe may name."""
    import inspect

    from torchvision.transforms import v2

    return sorted(
        name
        for name, value in vars(v2).items()
        if inspect.isclass(value)
        and issubclass(value, v2.Transform)
        and value is not v2.Transform
        and name not in NOT_AUGMENTATIONS
    )


def _step_mapping(value: Any) -> Any:
    """'- RandomHorizontalFlip' and '- RandomHorizontalFlip: {}' both become {name: {args}}."""
    if isinstance(value, str):
        return {value: {}}
    if isinstance(value, dict) and len(value) == 1:
        ((name, args),) = value.items()
        return {name: {} if args is None else args}
    raise PydanticCustomError(
        "augment_step",
        "an augmentation step is written '- <Transform>: {{args}}', e.g. '- RandomHorizontalFlip: {{}}'",
    )


def build_step(name: str, args: dict[str, Any]) -> Callable:
    """One torchvision transform, or a ValueError naming the step and what would be valid."""
    from torchvision.transforms import v2

    from optimize.registry import did_you_mean

    valid = augmentation_names()
    if name not in valid:
        raise ValueError(
            f"unknown augmentation '{name}'{did_you_mean(name, valid)}; valid: {', '.join(valid)}"
        )
    try:
        return getattr(v2, name)(**args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())}): {exc}") from None


def _valid_steps(steps: list[dict[str, dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
    for index, step in enumerate(steps):
        ((name, args),) = step.items()
        try:
            build_step(name, args)
        except ValueError as exc:
            raise PydanticCustomError("augment", "{message}", {"message": str(exc), "at": index}) from None
    return steps


AugmentSteps = Annotated[
    list[Annotated[dict[str, dict[str, Any]], BeforeValidator(_step_mapping)]],
    AfterValidator(_valid_steps),
]


def build_augment(steps: list[dict[str, dict[str, Any]]]) -> Callable | None:
    """The steps as one transform, or None when there are none."""
    if not steps:
        return None
    from torchvision.transforms import v2

    return v2.Compose([build_step(name, args) for step in steps for name, args in step.items()])
