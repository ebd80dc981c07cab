"""Quantize the ONNX model: INT8 post-training quantization (NNCF or ONNX Runtime, optionally
accuracy-aware), INT4 weight-only compression, or FP16 conversion."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from optimize.artifacts import ArtifactKind, write_artifact_meta
from optimize.errors import StageError
from optimize.registries import STAGES
from optimize.stages.base import Location, Stage, StageContext, StageOutput, StageParams
from optimize.targets import device_classes_for

if TYPE_CHECKING:
    import onnx

    from optimize.recipe.schema import Recipe

# Which precision (and, for int8, which backend) each option belongs to; unlisted options apply
# to every precision. Setting an option the chosen combination ignores is a validation error.
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "backend": ("int8",),
    "activations": ("int8",),
    "subset_size": ("int8", "int4"),
    "bias_correction": ("int8/nncf",),
    "model_type": ("int8/nncf",),
    "max_accuracy_drop": ("int8/nncf",),
    "max_fp32_layers": ("int8/nncf",),
    "calibration_method": ("int8/onnxruntime",),
    "per_channel": ("int8/onnxruntime",),
    "mode": ("int4",),
    "group_size": ("int4",),
    "ratio": ("int4",),
    "all_layers": ("int4",),
    "awq": ("int4",),
    "scale_estimation": ("int4",),
}


def _describe(tag: str) -> str:
    precision, _, backend = tag.partition("/")
    return f"precision {precision}" + (f" with backend {backend}" if backend else "")


class QuantizeParams(StageParams):
    precision: Literal["int8", "int4", "fp16"] = Field(
        "int8",
        description="int8: weights and activations (QDQ); int4: MatMul/Gemm weights only; fp16: for GPUs",
    )
    backend: Literal["nncf", "onnxruntime"] = Field(
        "nncf", description="int8: NNCF post-training quantization, or ONNX Runtime's quantize_static"
    )
    activations: Literal["auto", "symmetric", "asymmetric"] = Field(
        "auto",
        description="int8 activations: symmetric = signed int8, zero point 0 (all TensorRT takes); "
        "asymmetric = with zero points (NNCF preset mixed); auto: symmetric when a target runs TensorRT "
        "or there are no targets, else the backend's CPU default (NNCF: its preset for the model type)",
    )
    subset_size: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="calibration samples used (the first of data.calibration); default: all",
    )
    ignored_nodes: list[str] = Field(default_factory=list, description="node names left in floating point")
    ignored_types: list[str] = Field(
        default_factory=list, description="op types left in floating point, e.g. [Softmax]"
    )
    bias_correction: Literal["fast", "full"] = Field(
        "fast", description="int8/nncf: fast bias correction, or full (slower; per-layer sub-model runs)"
    )
    model_type: Literal["transformer"] | None = Field(
        None, description="int8/nncf: 'transformer' adds NNCF's patterns for attention blocks"
    )
    max_accuracy_drop: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="int8/nncf: absolute drop allowed on data.eval (top-1, or cosine to FP32 for embeddings); "
        "the most sensitive layers go back to FP32 until it holds, else the stage fails",
    )
    max_fp32_layers: int | None = Field(
        None,
        ge=1,
        description="with max_accuracy_drop: most layers that may go back to FP32 (default: no limit)",
    )
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="int8/onnxruntime: how activation ranges are found"
    )
    per_channel: bool = Field(True, description="int8/onnxruntime: one weight scale per output channel")
    mode: Literal["int4_asym", "int4_sym"] = Field(
        "int4_asym", description="int4: weights with a zero point per group (asym) or without (sym)"
    )
    group_size: Literal[16, 32, 64, 128, 256] = Field(
        32, description="int4: weights sharing one scale (smaller where a layer's input width needs it)"
    )
    ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="int4: share of MatMul weights in INT4; the most sensitive rest stay INT8",
    )
    all_layers: bool = Field(
        False, description="int4: embeddings and the last MatMul in INT4 too (default: INT8)"
    )
    awq: bool = Field(False, description="int4: activation-aware weight scaling (reads data.calibration)")
    scale_estimation: bool = Field(
        False, description="int4: scales fitted to calibration outputs (reads data.calibration; slow)"
    )

    @model_validator(mode="after")
    def _options_fit_precision(self) -> QuantizeParams:
        tags = {self.precision, f"{self.precision}/{self.backend}"}
        for name in sorted(self.model_fields_set):
            allowed = APPLIES_TO.get(name)
            if allowed and not tags & set(allowed):
                current = _describe(
                    f"{self.precision}/{self.backend}" if self.precision == "int8" else self.precision
                )
                raise PydanticCustomError(
                    "quantize_option",
                    "'{name}' applies to {allowed} only; this step is {current}",
                    {
                        "name": name,
                        "allowed": " or ".join(map(_describe, allowed)),
                        "current": current,
                        "at": name,
                    },
                )
        if self.max_fp32_layers is not None and self.max_accuracy_drop is None:
            raise PydanticCustomError(
                "quantize_option", "max_fp32_layers needs max_accuracy_drop", {"at": "max_fp32_layers"}
            )
        return self

    @property
    def data_aware_int4(self) -> bool:
        return self.awq or self.scale_estimation


def target_runtimes(recipe: Recipe) -> dict[str, str]:
    """Runtime of each target (by name; the TensorRT runtime need not be installed here)."""
    classes = device_classes_for(recipe.device_classes)
    return {name: classes[name].runtime for name in recipe.targets if name in classes}


def activation_scheme(params: QuantizeParams, recipe: Recipe) -> tuple[str, str]:
    """(scheme, why) for INT8 activations from the runtimes of the recipe's targets: 'symmetric'
    (signed, zero point 0), 'asymmetric', or 'cpu' (the backend's own default for CPUs)."""
    if params.activations != "auto":
        return params.activations, "set in the recipe"
    runtimes = target_runtimes(recipe)
    tensorrt = [name for name, runtime in runtimes.items() if runtime == "tensorrt"]
    if tensorrt:
        return "symmetric", f"{', '.join(tensorrt)} runs TensorRT, which takes only signed symmetric INT8"
    if not runtimes:
        return "symmetric", "no targets: signed symmetric INT8 builds on every runtime"
    return "cpu", f"every target runs on a CPU runtime ({', '.join(sorted(set(runtimes.values())))})"


@STAGES.register("quantize")
class QuantizeStage(Stage):
    """Quantize the ONNX model: INT8 post-training (NNCF or ONNX Runtime; optionally accuracy-aware,
    keeping sensitive layers in FP32), INT4 weight-only for MatMul/Gemm weights, or FP16.

    INT8 output is a QDQ graph that ONNX Runtime, OpenVINO and TensorRT all build. Activations
    are signed symmetric when a target runs TensorRT; CPU-only recipes get the backend's CPU
    default (NNCF: zero points of 0 and uint8 after ReLU for CNNs, asymmetric for transformers)."""

    Params = QuantizeParams
    consumes = ArtifactKind.ONNX
    produces = ArtifactKind.ONNX
    libraries = ("nncf", "onnx", "onnxruntime")
    compresses = True

    @classmethod
    def roles_read(cls, params: QuantizeParams) -> tuple[str, ...]:
        if params.precision == "int8":
            return ("calibration", "eval") if params.max_accuracy_drop is not None else ("calibration",)
        if params.precision == "int4" and params.data_aware_int4:
            return ("calibration",)
        return ()

    @classmethod
    def precision_after(cls, params: QuantizeParams, before: str) -> str:
        return params.precision

    @classmethod
    def check(
        cls, params: QuantizeParams, recipe: Recipe, index: int, base_dir: Path
    ) -> list[tuple[Location, str]]:
        where = ("stages", index, "quantize")
        problems = []
        tensorrt = [name for name, runtime in target_runtimes(recipe).items() if runtime == "tensorrt"]
        if params.precision == "int8" and params.activations == "asymmetric" and tensorrt:
            problems.append(
                (
                    (*where, "activations"),
                    f"TensorRT needs symmetric INT8 activations, and {', '.join(tensorrt)} "
                    "runs TensorRT; use activations: symmetric (or auto)",
                )
            )
        eval_data = recipe.data.eval
        if (
            params.max_accuracy_drop is not None
            and recipe.model.task == "classification"
            and eval_data is not None
            and not eval_data.labeled
        ):
            problems.append(
                ((*where, "max_accuracy_drop"), "needs labelled data.eval to measure top-1 accuracy")
            )
        return problems

    def run(self, params: QuantizeParams, context: StageContext) -> StageOutput:
        import onnx

        from optimize.onnx_tools import save_model
        from optimize.quantization.graph import scope_problems

        model = onnx.load(str(context.input.file))
        problems = scope_problems(model, list(params.ignored_nodes), list(params.ignored_types))
        ort_backend = params.precision == "int8" and params.backend == "onnxruntime"
        if problems and not ort_backend:  # ONNX Runtime's backend checks after its pre-processing
            raise StageError(context.step_id, "; ".join(problems))
        if params.precision == "int8":
            output, result = self._int8(model, params, context)
        elif params.precision == "int4":
            output, result = self._int4(model, params, context)
        else:
            output, result = self._fp16(model, params)
        save_model(output, context.workdir / "model.onnx")
        write_artifact_meta(
            context.workdir,
            ArtifactKind.ONNX,
            "model.onnx",
            precision=params.precision,
            opset=next((o.version for o in output.opset_import if o.domain in ("", "ai.onnx")), None),
            inputs=context.input.meta.get("inputs"),
            outputs=context.input.meta.get("outputs"),
            quantization=result.info,
        )
        return result

    # -- INT8 -----------------------------------------------------------------------------
    def _int8(self, model: onnx.ModelProto, params: QuantizeParams, context: StageContext):
        from optimize.quantization import nncf_int8, ort_int8
        from optimize.quantization.data import sample_feeds
        from optimize.quantization.graph import activation_storage, float_layer_names, quantized_layer_names

        scheme, why = activation_scheme(params, context.recipe)
        calibration, _ = sample_feeds(context.data, "calibration", params.subset_size)
        metrics: dict[str, float] = {"calibration_samples": float(len(calibration))}
        if params.backend == "onnxruntime":
            output = ort_int8.quantize(context.input.file, calibration, params, scheme, context.step_id)
        elif params.max_accuracy_drop is None:
            output = nncf_int8.quantize(model, calibration, params, scheme)
        else:
            output, budget = self._accuracy_controlled(model, calibration, params, scheme, context)
            metrics.update(budget)
        quantized, fp32 = quantized_layer_names(output), float_layer_names(output)
        if not quantized:
            raise StageError(context.step_id, "no layer was quantized; check ignored_nodes / ignored_types")
        metrics.update({"int8_layers": float(len(quantized)), "fp32_layers": float(len(fp32))})
        weights = "per-channel" if params.backend == "nncf" or params.per_channel else "per-tensor"
        info = {
            "precision": "int8",
            "backend": params.backend,
            "format": "QDQ",
            "activations": activation_storage(output),
            "activations_reason": why,
            "weights": f"symmetric {weights}",
            "calibration_samples": len(calibration),
            "int8_layers": len(quantized),
            "fp32_layers": fp32,
        }
        return output, StageOutput(metrics=metrics, info=info)

    def _accuracy_controlled(
        self, model, calibration, params: QuantizeParams, scheme: str, context: StageContext
    ):
        """NNCF's accuracy control, then our own check of the budget on the same eval samples:
        a model that misses it, or meets it only with nothing quantized, fails the stage."""
        from optimize.quantization import nncf_int8
        from optimize.quantization.data import Validation
        from optimize.quantization.graph import float_layer_names, quantized_layer_names

        task = context.recipe.model.task
        validation = Validation.build(context.data, task, model)
        output = nncf_int8.quantize_with_accuracy_control(model, calibration, validation, params, scheme)
        reference, achieved = validation.metric(model), validation.metric(output)
        drop = reference - achieved
        name = "top-1 accuracy" if task == "classification" else "cosine to FP32"
        fp32 = float_layer_names(output)
        if drop > params.max_accuracy_drop + 1e-9:
            limit = f" (max_fp32_layers: {params.max_fp32_layers})" if params.max_fp32_layers else ""
            raise StageError(
                context.step_id,
                f"max_accuracy_drop {params.max_accuracy_drop} not met: {name} {achieved:.4f} against FP32 "
                f"{reference:.4f} (drop {drop:.4f}) with {len(fp32)} layers back in FP32{limit}",
            )
        if not quantized_layer_names(output):
            raise StageError(
                context.step_id,
                f"max_accuracy_drop {params.max_accuracy_drop} is met only with every layer back in FP32, so "
                "nothing would be quantized; raise the budget or improve calibration (data, subset_size)",
            )
        return output, {"budget_fp32_metric": reference, "budget_int8_metric": achieved, "budget_drop": drop}

    # -- INT4 -----------------------------------------------------------------------------
    def _int4(self, model: onnx.ModelProto, params: QuantizeParams, context: StageContext):
        from optimize.quantization import int4
        from optimize.quantization.data import sample_feeds
        from optimize.quantization.graph import (
            MATMUL_OPS,
            int4_layer_names,
            quantized_layer_names,
            weighted_layers,
        )

        eligible = [
            node.name for node in weighted_layers(model, MATMUL_OPS) if node.name not in params.ignored_nodes
        ]
        if not eligible:
            kinds = sorted({node.op_type for node in weighted_layers(model)}) or ["none"]
            raise StageError(
                context.step_id,
                "precision int4 compresses MatMul/Gemm weights (transformer and MLP layers), but this model's "
                f"weighted layers are {', '.join(kinds)}; use precision int8 for convolutional models",
            )
        calibration = (
            sample_feeds(context.data, "calibration", params.subset_size)[0]
            if params.data_aware_int4
            else None
        )
        output = int4.compress(model, calibration, params)
        in_int4 = int4_layer_names(output)
        if not in_int4:
            raise StageError(
                context.step_id,
                f"no MatMul/Gemm weight could be stored in INT4 (group_size {params.group_size} must divide the "
                "input width; the last MatMul stays INT8 unless all_layers is set)",
            )
        backup = len(quantized_layer_names(output)) - len(in_int4)
        packed = any(node.op_type == "MatMulNBits" for node in output.graph.node)
        info = {
            "precision": "int4",
            "mode": params.mode,
            "group_size": params.group_size,
            "ratio": params.ratio,
            "format": "MatMulNBits (ONNX Runtime)" if packed else "blocked DequantizeLinear",
            "data_aware": params.data_aware_int4,
            "int4_layers": len(in_int4),
            "int8_layers": backup,
        }
        metrics = {"int4_layers": float(len(in_int4)), "int8_layers": float(backup)}
        return output, StageOutput(metrics=metrics, info=info)

    # -- FP16 -----------------------------------------------------------------------------
    def _fp16(self, model: onnx.ModelProto, params: QuantizeParams):
        from optimize.quantization import fp16

        output = fp16.convert(model, list(params.ignored_nodes), list(params.ignored_types))
        info = {"precision": "fp16", "io": "float32 inputs and outputs, cast at the graph edges"}
        return output, StageOutput(info=info)

    def cache_extra(self, params: QuantizeParams, context: StageContext) -> dict[str, Any]:
        """INT8 activation symmetry depends on the recipe's targets, which are not step params."""
        if params.precision != "int8":
            return {}
        return {"activation_scheme": activation_scheme(params, context.recipe)[0]}
