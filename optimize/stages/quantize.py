"""Quantize the ONNX model with one of the registered quantization methods (optimize.quantization):
INT8 post-training quantization (NNCF or ONNX Runtime, optionally accuracy-aware), INT8 with
activations quantized per run (backend dynamic), INT4 weight-only compression, FP16 conversion,
or candidates for each target to choose from (precision auto). The step's options choose the
method; the method's handler does the work, so this stage holds no method of its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

# Registers every method. The package imports each method by name, so through this import every
# method's module is in this stage's code fingerprint (its cache keys change when one is edited).
import optimize.quantization  # noqa: F401
from optimize.artifacts import ArtifactKind, write_artifact_meta
from optimize.errors import StageError
from optimize.quantization.base import QuantizeOptions, params_type, quantizer_for
from optimize.registries import QUANTIZERS, STAGES
from optimize.stages.base import Location, Stage, StageContext, StageOutput

if TYPE_CHECKING:
    from optimize.recipe.schema import Recipe

# One config per registered method, told apart by the selector keys (precision, backend, ...).
QuantizeParams = params_type()


@STAGES.register("quantize")
class QuantizeStage(Stage):
    """Quantize the ONNX model: INT8 post-training (NNCF or ONNX Runtime; optionally accuracy-aware,
    keeping sensitive layers in FP32), INT8 with activations quantized per run (backend dynamic),
    INT4 weight-only for MatMul/Gemm weights, FP16, or `precision: auto` (candidates each target
    times against FP32, shipping the fastest within an accuracy budget). `precision` (default int8)
    and, for int8, `backend` (default nncf) choose the method; each method takes its own options.

    INT8 output is a QDQ graph that ONNX Runtime, OpenVINO and TensorRT all build. Activations
    are signed symmetric when a target's runtime takes only those (TensorRT); CPU-only recipes get
    the backend's CPU default (NNCF: zero points of 0 and uint8 after ReLU for CNNs, asymmetric for
    transformers)."""

    Params = QuantizeParams
    consumes = ArtifactKind.ONNX
    produces = ArtifactKind.ONNX
    libraries = tuple(sorted({library for _, quantizer in QUANTIZERS for library in quantizer.libraries}))
    compresses = True

    @classmethod
    def roles_read(cls, params: QuantizeOptions) -> tuple[str, ...]:
        return quantizer_for(params).roles_read(params)

    @classmethod
    def precision_after(cls, params: QuantizeOptions, before: str) -> str:
        return quantizer_for(params).precision(params)

    @classmethod
    def check(
        cls, params: QuantizeOptions, recipe: Recipe, index: int, base_dir: Path
    ) -> list[tuple[Location, str]]:
        return quantizer_for(params).check(params, recipe, ("stages", index, "quantize"))

    def run(self, params: QuantizeOptions, context: StageContext) -> StageOutput:
        import onnx

        from optimize.onnx_tools import save_model

        quantizer = quantizer_for(params)
        model = onnx.load(str(context.input.file))
        problems = quantizer.scope_problems(model, params)
        if problems:
            raise StageError(context.step_id, "; ".join(problems))
        output, result = quantizer.quantize(model, params, context)
        save_model(output, context.workdir / "model.onnx")
        write_artifact_meta(
            context.workdir,
            ArtifactKind.ONNX,
            "model.onnx",
            precision=quantizer.precision(params),
            opset=next((o.version for o in output.opset_import if o.domain in ("", "ai.onnx")), None),
            inputs=context.input.meta.get("inputs"),
            outputs=context.input.meta.get("outputs"),
            quantization=result.info,
        )
        return result

    def cache_extra(self, params: QuantizeOptions, context: StageContext) -> dict[str, Any]:
        """What the method's output depends on besides its params (INT8: the targets' activation scheme)."""
        return quantizer_for(params).cache_extra(params, context.recipe)
