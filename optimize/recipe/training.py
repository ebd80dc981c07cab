"""The recipe's `training:` section: where torch stages compute, recipe-wide. Each training stage
may override a field (`None` there means the recipe's value); optimize.training checks a step's
combination of its own and the recipe's choices."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from optimize.recipe.base import StrictModel
from optimize.torch_device import Amp, Switch, amp_problem, device_problem


def _usable_device(value: str) -> str:
    problem = device_problem(value)
    if problem:
        raise PydanticCustomError("device", "{problem}", {"problem": problem})
    return value


Device = Annotated[str, AfterValidator(_usable_device)]

DEVICE_DOC = "auto (CUDA when torch sees a device, else the CPU), cpu, cuda or cuda:N"
AMP_DOC = "mixed precision: bf16, fp16 (CUDA only; with a gradient scaler) or off; part of the cache key"
CHANNELS_LAST_DOC = "NHWC memory format for the model and images; auto: on for models with 2-D convolutions"


class TrainingSpec(StrictModel):
    device: Device = Field("auto", description=DEVICE_DOC)
    amp: Amp = Field("off", description=AMP_DOC)
    channels_last: Switch = Field("auto", description=CHANNELS_LAST_DOC)

    @model_validator(mode="after")
    def _amp_fits_device(self) -> TrainingSpec:
        problem = amp_problem(self.amp, self.device)
        if problem:
            raise PydanticCustomError("amp", "{problem}", {"problem": problem, "at": "amp"})
        return self
