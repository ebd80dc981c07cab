"""The `model:` section of a recipe: where the model comes from and what it takes as input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PositiveInt, StringConstraints, field_validator, model_validator

from optimize.recipe.base import ExistingPath, StrictModel, sources_elsewhere
from optimize.registry import did_you_mean

OUTPUT_NAME = r"^[A-Za-z_][\w.:-]*$"


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


class WeightsSpec(StrictModel):
    path: ExistingPath = Field(
        description="state_dict file (.pt/.pth/.safetensors) loaded with weights_only=True"
    )
    strict: bool = Field(
        True,
        description="false: load the keys that fit and report the missing and unexpected ones; a classifier "
        "head sized for other classes is replaced either way",
    )


def _weights_mapping(value: Any) -> Any:
    """`weights: file.pt` is short for `weights: {path: file.pt}`."""
    return {"path": value} if isinstance(value, (str, Path)) else value


def unknown_output(name: str, outputs: list[str]) -> str:
    return (
        f"'{name}' is not an output of the model{did_you_mean(name, outputs)}; outputs: {', '.join(outputs)}"
    )


class ModelSpec(StrictModel):
    source: str = Field(
        description="<kind>:<reference>, a registered model source (listed under model sources)"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the constructor")
    weights: Annotated[WeightsSpec, BeforeValidator(_weights_mapping)] | None = Field(
        None,
        description="pretrained state_dict: a file (.pt/.pth/.safetensors, loaded with weights_only=True) "
        "or {path, strict}",
    )
    input: InputSpec | None = Field(
        None, description="the model's one input (shorthand for `inputs` with one entry)"
    )
    inputs: list[InputSpec] | None = Field(
        None,
        min_length=1,
        description="the model's inputs in forward() order (required for torchvision and python sources "
        "unless `input` is given); data yields a dict of arrays by these names",
    )
    output_name: str = Field("output", pattern=OUTPUT_NAME, description="output tensor name")
    outputs: list[Annotated[str, StringConstraints(pattern=OUTPUT_NAME)]] | None = Field(
        None, min_length=1, description="output tensor names, for a model returning several (a tuple)"
    )
    eval_output: str | None = Field(
        None,
        description="the output accuracy and agreement are computed on (default: the first); the "
        "others are compared with FP32 too",
    )
    task: Literal["classification", "embedding"] = Field(
        "classification",
        description="classification: top-1 accuracy on labels; embedding: cosine similarity to FP32",
    )
    trust_pickle: bool = Field(
        False, description="allow a pickled full module (torch-pickle:); pickles can run arbitrary code"
    )

    def declared_inputs(self) -> list[InputSpec] | None:
        """The inputs the recipe declares (`input` or `inputs`), or None when it declares none."""
        return self.inputs if self.inputs is not None else [self.input] if self.input else None

    def declared_outputs(self) -> list[str]:
        return self.outputs if self.outputs is not None else [self.output_name]

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
    def _one_interface(self) -> ModelSpec:
        from pydantic_core import PydanticCustomError

        def problem(at: str, template: str, **values: str) -> PydanticCustomError:
            return PydanticCustomError("model_interface", template, {"at": at, **values})

        if self.input is not None and self.inputs is not None:
            raise problem("inputs", "give either `input` (one) or `inputs` (a list), not both")
        if self.outputs is not None and "output_name" in self.model_fields_set:
            raise problem("outputs", "give either `output_name` (one) or `outputs` (a list), not both")
        for field, names in (
            ("inputs", [spec.name for spec in self.inputs or []]),
            ("outputs", self.outputs or []),
        ):
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise problem(field, "'{name}' is listed twice; names must be unique", name=twice[0])
        if self.outputs is not None and self.eval_output not in (None, *self.outputs):
            raise problem("eval_output", "{message}", message=unknown_output(self.eval_output, self.outputs))
        return self

    @model_validator(mode="after")
    def _source_specific(self, info) -> ModelSpec:
        from pydantic_core import PydanticCustomError

        from optimize.registries import MODEL_SOURCES

        if sources_elsewhere(info):
            return self
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
