"""INT8 with activations quantized at run time (precision int8, backend dynamic): no calibration.

The weights of MatMul/Gemm layers and embedding tables are compressed to INT8 per output channel
(NNCF's data-free weight compression, asymmetric), then laid out for the targets' runtimes
(optimize.quantization.layouts). For ONNX Runtime that is DynamicQuantizeLinear → MatMulInteger,
the graph `onnxruntime.quantization.quantize_dynamic` writes, which ONNX Runtime fuses into its
integer kernels (DynamicQuantizeMatMul, MatMulIntegerToFloat); the embeddings become
GatherBlockQuantized. OpenVINO runs that graph in float, slower than FP32; for OpenVINO targets
the INT8 weights stay behind DequantizeLinear, which OpenVINO compiles into compressed-weight
MatMuls. Measured on all-MiniLM-L6-v2 (x86, AVX-512 VNNI): ONNX Runtime 2.2-2.4× FP32, embedding
cosine 0.99 to FP32.

ONNX Runtime's transformer optimizer (onnxruntime.transformers.optimizer, model_type bert) is not
run first: on the exported MiniLM it fuses SkipLayerNormalization and BiasGelu, which ONNX
Runtime's own session optimisation already does, but not the attention (the exporter's
scaled-dot-product pattern, with IsNaN/Where after the softmax, is not one it knows), and its
output would hold contrib ops where the standard graph runs as fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from optimize.errors import StageError
from optimize.quantization.base import Problem, QuantizeOptions, Quantizer
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.recipe.schema import Recipe
    from optimize.stages.base import StageContext, StageOutput

# int8_format auto without targets: ONNX Runtime's integer kernels, from standard ONNX ops.
NO_TARGETS_FORMAT = "integer"


class DynamicInt8Config(QuantizeOptions):
    """INT8 weights with activations quantized at run time, no calibration data (`precision: int8`,
    `backend: dynamic`): MatMul/Gemm layers and embeddings of transformers and MLPs, laid out for
    the targets' runtimes (ONNX Runtime: its integer MatMul kernels)."""

    precision: Literal["int8"] = Field(
        "int8", description="int8: weights in INT8; activations quantized at run time (backend dynamic)"
    )
    backend: Literal["dynamic"] = Field(
        "dynamic",
        description="INT8 MatMul/Gemm and embedding weights per output channel (data-free), activations "
        "quantized per run: no calibration data",
    )
    int8_format: Literal["auto", "integer", "nbits", "dequantize"] = Field(
        "auto",
        description="integer = DynamicQuantizeLinear → MatMulInteger (ONNX Runtime's DynamicQuantizeMatMul) and "
        "GatherBlockQuantized embeddings; nbits = 8-bit MatMulNBits with int8 compute (ONNX Runtime and "
        "OpenVINO); dequantize = INT8 weights behind DequantizeLinear, activations left to the runtime "
        "(OpenVINO); auto: integer for ONNX Runtime targets or no targets, dequantize for OpenVINO, nbits "
        "when the targets' runtimes differ",
    )


@QUANTIZERS.register("dynamic-int8")
class DynamicInt8Quantizer(Quantizer):
    Config = DynamicInt8Config
    libraries = ("nncf", "onnx", "onnxruntime")

    def check(self, params: DynamicInt8Config, recipe: Recipe, where: tuple) -> list[Problem]:
        """A runtime that takes INT8 only as QDQ with calibrated symmetric activations (TensorRT)
        reads none of the layouts: refused here rather than when its engine is built."""
        from optimize.quantization.int8 import symmetric_only_targets

        strict = symmetric_only_targets(recipe)
        if not strict:
            return []
        verb = "runs" if len(strict) == 1 else "run"
        return [
            (
                (*where, "backend"),
                f"{', '.join(strict)} {verb} {', '.join(sorted(set(strict.values())))}, which takes INT8 only as "
                "QDQ with calibrated symmetric activations; use backend nncf (or onnxruntime)",
            )
        ]

    def cache_extra(self, params: DynamicInt8Config, recipe: Recipe) -> dict[str, Any]:
        """With int8_format auto, the layout depends on the targets' runtimes."""
        from optimize.quantization.layouts import choose_format

        return {"int8_format": choose_format(params.int8_format, recipe, NO_TARGETS_FORMAT)[0]}

    def quantize(
        self, model: onnx.ModelProto, params: DynamicInt8Config, context: StageContext
    ) -> tuple[onnx.ModelProto, StageOutput]:
        from optimize.quantization.graph import (
            float_layer_names,
            kinds_without_matmul_weights,
            quantized_layer_names,
        )
        from optimize.quantization.layouts import KERNELS, choose_format, contrib_ops, convert
        from optimize.stages.base import StageOutput

        kinds = kinds_without_matmul_weights(model, list(params.ignored_nodes))
        if kinds is not None:
            raise StageError(
                context.step_id,
                "backend dynamic quantizes MatMul/Gemm weights (transformer and MLP layers), but this model's "
                f"weighted layers are {', '.join(kinds)}; use backend nncf for convolutional models",
            )
        int8_format, why, wanted = choose_format(params.int8_format, context.recipe, NO_TARGETS_FORMAT)
        output = compress_int8(model, params)
        quantized, fp32 = quantized_layer_names(output), float_layer_names(output)
        if not quantized:
            raise StageError(context.step_id, "no layer was quantized; check ignored_nodes / ignored_types")
        gathers = sum(1 for node in output.graph.node if node.op_type == "DequantizeLinear") - len(quantized)
        rewritten = convert(output, int8_format)
        info = {
            "precision": "int8",
            "backend": "dynamic",
            "format": int8_format,
            "format_reason": why,
            "format_by_target": wanted,
            "kernels": KERNELS[int8_format],
            "activations": "quantized per run (uint8, asymmetric)"
            if int8_format != "dequantize"
            else "floating point in the file; the runtime may quantize them (OpenVINO's CPU plugin)",
            "weights": "asymmetric per output channel",
            "rewritten": rewritten,
            "contrib_ops": contrib_ops(output),
            "int8_layers": len(quantized),
            "int8_embeddings": max(gathers, 0),
            "fp32_layers": fp32,
        }
        metrics = {"int8_layers": float(len(quantized)), "fp32_layers": float(len(fp32))}
        return output, StageOutput(metrics=metrics, info=info)


def compress_int8(model: onnx.ModelProto, params: DynamicInt8Config) -> onnx.ModelProto:
    """INT8 weights behind DequantizeLinear: NNCF's data-free weight compression (MatMul/Gemm
    weights per output channel, embedding tables per row), asymmetric."""
    import nncf

    # NNCF would compress convolution weights too, with a scale per output channel shaped like the
    # kernel ([C, 1, 1, 1]), which DequantizeLinear does not take: ONNX Runtime and OpenVINO both
    # refuse the file. Convolutions stay in float here (backend nncf quantizes them).
    present = {node.op_type for node in model.graph.node}
    convolutions = [op for op in ("Conv", "ConvTranspose") if op in present]
    return nncf.compress_weights(
        model,
        mode=nncf.CompressWeightsMode.INT8_ASYM,
        ignored_scope=nncf.IgnoredScope(
            names=list(params.ignored_nodes), types=[*params.ignored_types, *convolutions]
        ),
    )
