"""The `model:` section of a recipe: where the model comes from and what it takes as input."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from optimize.recipe.base import ExistingPath, StrictModel


class InputSpec(StrictModel):
    name: str = Field(
        "input", pattern=r"^[A-Za-z_][\w.:-]*$", description="input tensor name in the ONNX file"
    )
    shape: list[PositiveInt] = Field(
        min_length=1, max_length=6, description="example shape, batch first, e.g. [1, 3, 32, 32]"
    )
    dtype: Literal["float32", "float16", "int64", "int32"] = "float32"
    dynamic_batch: bool = Field(True, description="export axis 0 as a dynamic batch axis")
    dynamic_axes: list[PositiveInt] = Field(
        default_factory=list, description="further axes (by index) that vary, e.g. [1] for sequence length"
    )


class ModelSpec(StrictModel):
    source: str = Field(
        description="<kind>:<reference>, a registered model source (listed under model sources)"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the constructor")
    weights: ExistingPath | None = Field(
        None, description="state_dict file (.pt/.pth/.safetensors) loaded with weights_only=True"
    )
    input: InputSpec | None = Field(None, description="required for torchvision and python sources")
    output_name: str = Field("output", pattern=r"^[A-Za-z_][\w.:-]*$", description="output tensor name")
    task: Literal["classification", "embedding"] = Field(
        "classification",
        description="classification: top-1 accuracy on labels; embedding: cosine similarity to FP32",
    )
    trust_pickle: bool = Field(
        False, description="allow a pickled full module (torch-pickle:); pickles can run arbitrary code"
    )

    @property
    def kind(self) -> str:
        return self.source.partition(":")[0]

    @property
    def reference(self) -> str:
        return self.source.partition(":")[2]

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        from pydantic_core import PydanticCustomError

        from optimize.registries import MODEL_SOURCES

        kind, _, reference = value.partition(":")
        if kind not in MODEL_SOURCES:
            raise PydanticCustomError(
                "model_source", "{message}", {"message": MODEL_SOURCES.unknown_message(kind)}
            )
        if not reference:
            raise PydanticCustomError(
                "model_source",
                "'{value}' names no model: write {kind}:<reference>",
                {"value": value, "kind": kind},
            )
        return value

    @model_validator(mode="after")
    def _source_specific(self, info) -> ModelSpec:
        from pydantic_core import PydanticCustomError

        from optimize.registries import MODEL_SOURCES

        base_dir: Path | None = (info.context or {}).get("base_dir")
        problem = MODEL_SOURCES.get(self.kind).check(self, base_dir)
        if problem:
            field = (
                problem.split(":", 1)[0].removeprefix("model.") if problem.startswith("model.") else "source"
            )
            raise PydanticCustomError(
                "model_source", "{problem}", {"problem": problem, "at": field.split(".")[0]}
            )
        return self
