"""INT4 weight-only compression of MatMul/Gemm weights with nncf.compress_weights (precision int4).

Below opset 21 NNCF writes ONNX Runtime's MatMulNBits op; from opset 21 on, standard blocked
DequantizeLinear nodes with INT4 weights, which other runtimes read too. Embeddings and the last
MatMul stay in INT8 unless `all_layers` is set (NNCF's default, and what keeps accuracy).

What makes the file fast is how it is laid out for the runtime (optimize.quantization.layouts):
MatMulNBits computes in int8 with `accuracy_level: 4` (activations quantized per block at run
time; unset, ONNX Runtime's CPU expands the weights to float on every run), and the layers NNCF
keeps in INT8 are laid out per `int8_format` (for ONNX Runtime: its integer MatMul kernels, and
GatherBlockQuantized for the embeddings instead of a dequantized table on every run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from optimize.errors import StageError
from optimize.quantization.base import CalibratedOptions, Quantizer
from optimize.registries import QUANTIZERS

if TYPE_CHECKING:
    import onnx

    from optimize.quantization.data import Feeds
    from optimize.recipe.schema import Recipe
    from optimize.stages.base import StageContext, StageOutput


class Int4WeightOnlyConfig(CalibratedOptions):
    """INT4 weight-only compression of MatMul/Gemm weights with NNCF (`precision: int4`), laid out
    for the targets' runtimes (ONNX Runtime: MatMulNBits with int8 compute, integer kernels for the
    layers kept in INT8, block-quantized embedding gathers). Reads data.calibration only with awq
    or scale_estimation."""

    precision: Literal["int4"] = Field(
        "int4", description="int4: MatMul/Gemm weights only (transformer and MLP layers)"
    )
    mode: Literal["int4_asym", "int4_sym"] = Field(
        "int4_asym", description="weights with a zero point per group (asym) or without (sym)"
    )
    group_size: Literal[16, 32, 64, 128, 256] = Field(
        32, description="weights sharing one scale (smaller where a layer's input width needs it)"
    )
    ratio: float = Field(
        0.8, gt=0, le=1, description="share of MatMul weights in INT4; the most sensitive rest stay INT8"
    )
    all_layers: bool = Field(False, description="embeddings and the last MatMul in INT4 too (default: INT8)")
    awq: bool = Field(False, description="activation-aware weight scaling (reads data.calibration)")
    scale_estimation: bool = Field(
        False, description="scales fitted to calibration outputs (reads data.calibration; slow)"
    )
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4,
        description="MatMulNBits' compute type on ONNX Runtime's CPU: 4 = int8 (activations quantized per "
        "block at run time: the fast path), 1 = fp32, 2 = fp16, 3 = bf16, 0 = unset (fp32; the weights are "
        "expanded on every run)",
    )
    int8_format: Literal["auto", "integer", "nbits", "dequantize"] = Field(
        "auto",
        description="how the layers kept in INT8 (the most sensitive MatMuls, the embeddings) are stored: "
        "integer = ONNX Runtime's integer MatMul (DynamicQuantizeMatMul) and GatherBlockQuantized; nbits = "
        "8-bit MatMulNBits and GatherBlockQuantized (ONNX Runtime and OpenVINO); dequantize = INT8 weights "
        "behind DequantizeLinear (OpenVINO compresses them; ONNX Runtime expands them every run); auto: the "
        "fastest on the targets' runtime (integer for ONNX Runtime, dequantize for OpenVINO), nbits when "
        "they differ or there are no targets",
    )

    @property
    def data_aware(self) -> bool:
        return self.awq or self.scale_estimation


# int8_format auto without targets: the layout both ONNX Runtime and OpenVINO run fast.
NO_TARGETS_FORMAT = "nbits"


@QUANTIZERS.register("int4")
class Int4WeightOnlyQuantizer(Quantizer):
    Config = Int4WeightOnlyConfig
    libraries = ("nncf", "onnx", "onnxruntime")

    def roles_read(self, params: Int4WeightOnlyConfig) -> tuple[str, ...]:
        return ("calibration",) if params.data_aware else ()

    def cache_extra(self, params: Int4WeightOnlyConfig, recipe: Recipe) -> dict[str, Any]:
        """With int8_format auto, the layout depends on the targets' runtimes."""
        from optimize.quantization.layouts import choose_format

        return {"int8_format": choose_format(params.int8_format, recipe, NO_TARGETS_FORMAT)[0]}

    def quantize(
        self, model: onnx.ModelProto, params: Int4WeightOnlyConfig, context: StageContext
    ) -> tuple[onnx.ModelProto, StageOutput]:
        from optimize.quantization.data import sample_feeds
        from optimize.quantization.graph import (
            int4_layer_names,
            kinds_without_matmul_weights,
            quantized_layer_names,
        )
        from optimize.quantization.layouts import (
            KERNELS,
            choose_format,
            contrib_ops,
            convert,
            set_accuracy_level,
        )
        from optimize.stages.base import StageOutput

        kinds = kinds_without_matmul_weights(model, list(params.ignored_nodes))
        if kinds is not None:
            raise StageError(
                context.step_id,
                "precision int4 compresses MatMul/Gemm weights (transformer and MLP layers), but this model's "
                f"weighted layers are {', '.join(kinds)}; use precision int8 for convolutional models",
            )
        calibration = (
            sample_feeds(context.data, "calibration", params.subset_size)[0] if params.data_aware else None
        )
        output = compress(model, calibration, params)
        in_int4 = int4_layer_names(output)
        if not in_int4:
            raise StageError(
                context.step_id,
                f"no MatMul/Gemm weight could be stored in INT4 (group_size {params.group_size} must divide the "
                "input width; the last MatMul stays INT8 unless all_layers is set)",
            )
        backup = len(quantized_layer_names(output)) - len(in_int4)
        packed = any(node.op_type == "MatMulNBits" for node in output.graph.node)
        int8_format, why, wanted = choose_format(params.int8_format, context.recipe, NO_TARGETS_FORMAT)
        set_accuracy_level(output, params.accuracy_level)
        rewritten = convert(output, int8_format, params.accuracy_level)
        info = {
            "precision": "int4",
            "mode": params.mode,
            "group_size": params.group_size,
            "ratio": params.ratio,
            "format": "MatMulNBits (ONNX Runtime)" if packed else "blocked DequantizeLinear",
            "accuracy_level": params.accuracy_level,
            "int8_format": int8_format,
            "int8_format_reason": why,
            "int8_format_by_target": wanted,
            "int8_kernels": KERNELS[int8_format],
            "int8_rewritten": rewritten,
            "contrib_ops": contrib_ops(output),
            "data_aware": params.data_aware,
            "int4_layers": len(in_int4),
            "int8_layers": backup,
        }
        metrics = {"int4_layers": float(len(in_int4)), "int8_layers": float(backup)}
        return output, StageOutput(metrics=metrics, info=info)


def compress(
    model: onnx.ModelProto, calibration: list[Feeds] | None, params: Int4WeightOnlyConfig
) -> onnx.ModelProto:
    """calibration: samples for AWQ / scale estimation / data-aware layer ranking, or None."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    from optimize.quantization.layouts import gathers_from_matmulnbits

    # A layer whose input width group_size does not divide gets the largest power of two >= 16
    # (MatMulNBits' smallest block) that does, else the INT8 backup, instead of failing the model.
    fallback = AdvancedCompressionParameters(
        group_size_fallback_mode=GroupSizeFallbackMode.ADJUST, min_adjusted_group_size=16
    )
    # calibration is already cut to subset_size
    data = {"dataset": nncf.Dataset(calibration), "subset_size": len(calibration)} if calibration else {}
    compressed = nncf.compress_weights(
        model,
        mode=getattr(nncf.CompressWeightsMode, params.mode.upper()),  # INT4_SYM / INT4_ASYM
        ratio=params.ratio,
        group_size=params.group_size,
        all_layers=params.all_layers,
        ignored_scope=nncf.IgnoredScope(names=list(params.ignored_nodes), types=list(params.ignored_types)),
        awq=params.awq,
        scale_estimation=params.scale_estimation,
        advanced_parameters=fallback,
        **data,
    )
    gathers_from_matmulnbits(compressed)  # before the zero points are repacked for MatMulNBits
    repair_matmulnbits(compressed)
    return compressed


def repair_matmulnbits(model: onnx.ModelProto) -> None:
    """Fix two defects of NNCF 3.4's MatMulNBits output, in place (a third, embeddings written as
    MatMulNBits, is layouts.gathers_from_matmulnbits).

    1. For MatMul followed by Add(bias), NNCF passes the bias to MatMulNBits *and* keeps the
       Add, so the bias is added twice (MiniLM's embedding cosine falls from 0.97 to 0.83).
    2. Asymmetric zero points are stored one per byte, shape [N, blocks]; ONNX Runtime wants
       two 4-bit values per byte, shape [N, ceil(blocks / 2)], and refuses the model otherwise.
    """
    import numpy as np
    from onnx import numpy_helper

    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        if len(node.input) > 5 and node.input[5]:
            bias = node.input[5]
            if any(c.op_type == "Add" and bias in c.input for c in consumers.get(node.output[0], [])):
                del node.input[4:]  # g_idx and bias
                if node.input[3] == "":
                    del node.input[3]
        if len(node.input) > 3 and node.input[3] in initializers:
            tensor = initializers[node.input[3]]
            zero_points = numpy_helper.to_array(tensor)
            bits = next(a.i for a in node.attribute if a.name == "bits")
            if zero_points.ndim == 2 and bits == 4:
                if zero_points.shape[1] % 2:
                    zero_points = np.pad(zero_points, ((0, 0), (0, 1)))
                packed = (zero_points[:, 0::2] & 0x0F) | ((zero_points[:, 1::2] & 0x0F) << 4)
                tensor.CopyFrom(numpy_helper.from_array(packed.astype(np.uint8), tensor.name))
