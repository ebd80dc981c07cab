"""A device class: a family of devices that can share one engine (same runtime, runtime version
line and hardware generation), with the build and measurement settings for it."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, model_validator

from optimize.recipe.base import Slug, StrictModel
from optimize.registries import RUNTIMES

Precision = Literal["fp32", "fp16", "int8", "int4"]


class BatchProfile(StrictModel):
    min: PositiveInt = Field(1, description="smallest batch the engine accepts")
    opt: PositiveInt = Field(8, description="batch the engine is tuned for; throughput is measured at it")
    max: PositiveInt = Field(32, description="largest batch the engine accepts")

    @model_validator(mode="after")
    def _ordered(self) -> BatchProfile:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"needs min ≤ opt ≤ max, got {self.min}, {self.opt}, {self.max}")
        return self


class DeviceClassBase(StrictModel):
    name: Slug
    description: str = ""
    arch: Literal["x86_64", "aarch64", "any"] = Field(
        "any", description="CPU architecture the engine runs on"
    )
    accepted_precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8", "int4"], description="model precisions it can build"
    )
    runtime_version: str | None = Field(None, description="runtime version line, e.g. '10.*' or '>=1.20'")
    memory_budget_mb: PositiveInt | None = Field(None, description="memory the model may use on the device")
    batch: BatchProfile = Field(default_factory=BatchProfile)
    threads: PositiveInt | None = Field(
        None, description="CPU threads for inference (null: the runtime's default)"
    )


def _device_class_union():
    members = []
    for name, runtime in RUNTIMES:
        members.append(
            type(
                f"{runtime.__name__}Class",
                (DeviceClassBase,),
                {
                    "__annotations__": {"runtime": Literal[name], "settings": runtime.Settings},
                    "settings": Field(
                        default_factory=runtime.Settings, description=f"{name}-specific build settings"
                    ),
                    "__module__": __name__,
                },
            )
        )
    return Annotated[Union[tuple(members)], Field(discriminator="runtime")]  # noqa: UP007


DeviceClass = _device_class_union()
