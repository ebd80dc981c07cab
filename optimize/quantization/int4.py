"""INT4 weight-only compression of MatMul/Gemm weights with nncf.compress_weights.

Below opset 21 NNCF writes ONNX Runtime's MatMulNBits op; from opset 21 on, standard blocked
DequantizeLinear nodes with INT4 weights, which other runtimes read too. Embeddings and the last
MatMul stay in INT8 unless `all_layers` is set (NNCF's default, and what keeps accuracy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from optimize.quantization.data import Feeds
    from optimize.stages.quantize import QuantizeParams


def compress(
    model: onnx.ModelProto, calibration: list[Feeds] | None, params: QuantizeParams
) -> onnx.ModelProto:
    """calibration: samples for AWQ / scale estimation / data-aware layer ranking, or None."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

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
    repair_matmulnbits(compressed)
    return compressed


def repair_matmulnbits(model: onnx.ModelProto) -> None:
    """Fix two defects of NNCF 3.4's MatMulNBits output, in place.

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
