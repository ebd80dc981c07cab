"""The `settings:` of a TensorRT device class, validated when the recipe or class file loads.

Kept apart from everything else so the schema (and `optimize targets`) can read what a class may
set without the planner, the probes or the adapter; nothing here touches TensorRT or a GPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from optimize.recipe.base import StrictModel

ENGINE_FILE = "model.engine"


class TensorRTSettings(StrictModel):
    workspace_mb: PositiveInt | None = Field(
        None,
        description="limit of the WORKSPACE memory pool (scratch memory of one layer); null: TensorRT's default, all device memory",
    )
    builder_optimization_level: int = Field(
        3,
        ge=0,
        le=5,
        description="0-5: higher searches longer for faster kernels (3 is TensorRT's default; 0 ignores the timing cache)",
    )
    strongly_typed: bool = Field(
        True,
        description="TensorRT 10.x: build a strongly typed network (precision from the ONNX file). Always on in 11.x",
    )
    allow_fp16: bool = Field(
        False,
        description="TensorRT 10.x weak typing only (needs strongly_typed: false): let TensorRT pick FP16 kernels for an FP32 "
        "model (BuilderFlag.FP16, the classic JetPack 6 DLA flow). Removed in 11.x: there the ONNX file must carry FP16",
    )
    tf32: bool = Field(
        True, description="allow TF32 math for FP32 layers on Ampere and newer (TensorRT's default)"
    )
    sparse_weights: bool = Field(
        False, description="use 2:4 structured-sparsity kernels where the weights allow it"
    )
    dla_core: NonNegativeInt | None = Field(
        None,
        description="run on this DLA core of a Jetson Orin (null: GPU only). DLA runs FP16 and INT8 layers only",
    )
    gpu_fallback: bool = Field(
        True,
        description="with dla_core: layers the DLA cannot run go to the GPU instead of failing the build",
    )
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = Field(
        "none",
        description="none: engine runs on the build GPU's model only; ampere_plus: on any Ampere or newer GPU (built on "
        "Ampere+); same_compute_capability: on GPUs of the build GPU's compute capability (TensorRT >= 10.9). Both are slower",
    )
    version_compatible: bool = Field(
        False,
        description="embed the lean runtime so later TensorRT versions of the same major line can run the engine (slower)",
    )
    timing_cache: bool = Field(
        True,
        description="reuse and extend a timing cache per device class, GPU, CUDA and TensorRT version: faster rebuilds",
    )
    max_aux_streams: NonNegativeInt | None = Field(
        None,
        description="auxiliary CUDA streams TensorRT may use for parallel branches (0: single stream; null: TensorRT decides)",
    )
    profiling_verbosity: Literal["layer_names_only", "detailed", "none"] = Field(
        "layer_names_only",
        description="layer information kept in the engine for the engine inspector and NVTX",
    )
    shape_ranges: dict[str, tuple[PositiveInt, PositiveInt, PositiveInt]] = Field(
        default_factory=dict,
        description="min, opt, max of dynamic non-batch axes, keyed 'input:axis' (e.g. {'input_ids:1': [16, 128, 512]}); "
        "the batch axis comes from the class's batch profile",
    )
    compute_capability: str | None = Field(
        None,
        pattern=r"^(>=)?\d+\.\d+$",
        description="GPU the class is for: '8.7' exactly, or a minimum like '>=8.0'",
    )
    integrated_gpu: bool | None = Field(
        None, description="true: a Jetson-style integrated GPU; false: a discrete GPU; null: either"
    )

    @field_validator("shape_ranges")
    @classmethod
    def _ranges(cls, ranges: dict[str, tuple[int, int, int]]) -> dict[str, tuple[int, int, int]]:
        for key, (low, opt, high) in ranges.items():
            name, _, axis = key.rpartition(":")
            if not name or not axis.isdigit() or int(axis) == 0:
                raise ValueError(
                    f"key '{key}' must be 'input:axis' with axis ≥ 1 (axis 0 follows the class's batch profile)"
                )
            if not low <= opt <= high:
                raise ValueError(f"'{key}' needs min ≤ opt ≤ max, got {low}, {opt}, {high}")
        return ranges

    def batch_problem(self, batch) -> str | None:
        """Why the class's batch profile cannot go with these settings: a DLA runs one static
        shape, so a DLA class needs min = opt = max (checked when the class loads)."""
        if self.dla_core is not None and not batch.min == batch.opt == batch.max:
            return (
                f"dla_core {self.dla_core} needs a static batch (the DLA runs one shape: min = opt = max), got "
                f"{batch.min}/{batch.opt}/{batch.max}; e.g. batch: {{min: {batch.opt}, opt: {batch.opt}, max: {batch.opt}}}"
            )
        return None

    @model_validator(mode="after")
    def _static_dla_ranges(self) -> TensorRTSettings:
        if self.dla_core is not None:
            for key, (low, opt, high) in self.shape_ranges.items():
                if not low == opt == high:
                    raise ValueError(
                        f"dla_core {self.dla_core} needs static shapes: shape_ranges '{key}' is {low}/{opt}/{high}; "
                        f"set it to [{opt}, {opt}, {opt}]"
                    )
        return self

    @model_validator(mode="after")
    def _weak_typing(self) -> TensorRTSettings:
        if self.allow_fp16 and self.strongly_typed:
            raise ValueError(
                "allow_fp16 needs strongly_typed: false (TensorRT 10.x weak typing); a strongly typed network takes "
                "its precision from the ONNX file"
            )
        return self
