"""Small helpers around ONNX files used by several stages and runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime

TWO_GB = 2_000_000_000
_ELEMENT_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 10: 16, 11: 64, 16: 16, 21: 4, 22: 4}


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Save, moving weights to a side file when the protobuf would pass its 2 GB limit."""
    import onnx

    large = model.ByteSize() > TWO_GB
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data" if large else None,
    )


def load_checked(path: Path) -> onnx.ModelProto:
    """Load, run the full checker (with shape inference) and return the shape-inferred model."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    return onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=False)


QUANTIZED_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
}


def stored_precision(model: onnx.ModelProto) -> str:
    """The precision a model's weights are stored in, read from its graph: int4 (4-bit
    MatMulNBits or 4-bit tensors), int8 (quantize/dequantize nodes, 8-bit MatMulNBits), fp16
    (float16 weights), else fp32. Runtimes build by it (e.g. ONNX Runtime's uint8 activations
    after a ReLU)."""
    from onnx import TensorProto

    types = {tensor.data_type for tensor in model.graph.initializer}
    ops = {node.op_type for node in model.graph.node}
    nbits = {
        attribute.i
        for node in model.graph.node
        if node.op_type == "MatMulNBits"
        for attribute in node.attribute
        if attribute.name == "bits"
    }
    if 4 in nbits or types & {TensorProto.INT4, TensorProto.UINT4}:
        return "int4"
    if nbits:
        return "int8"
    if ops & QUANTIZED_OPS:
        return "int8"
    return "fp16" if TensorProto.FLOAT16 in types else "fp32"


def weight_stats(model: onnx.ModelProto) -> dict[str, float]:
    """Parameters stored as initializers and the average bits used per weight element.

    QuantizeLinear scale / zero-point tensors count as parameters too: they are stored weights.
    """
    import numpy as np

    elements = bits = 0
    for tensor in model.graph.initializer:
        count = int(np.prod(tensor.dims)) if tensor.dims else 1
        elements += count
        bits += count * _ELEMENT_BITS.get(tensor.data_type, 32)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:  # MatMulNBits packs 4-bit weights and zero points into uint8
        if node.op_type == "MatMulNBits":
            attributes = {a.name: a.i for a in node.attribute}
            blocks = -(-attributes["K"] // attributes["block_size"])
            unpacked = {node.input[1]: attributes["K"] * attributes["N"]}
            if len(node.input) > 3 and node.input[3]:
                unpacked[node.input[3]] = blocks * attributes["N"]
            for name, real in unpacked.items():
                packed = initializers.get(name)
                if packed is not None and packed.data_type == 2:  # uint8 (float zero points are not packed)
                    count = int(np.prod(packed.dims))
                    elements += real - count
                    bits += real * attributes.get("bits", 4) - count * 8
    return {"parameters": float(elements), "bits_per_weight": bits / elements if elements else 0.0}


def session_options(
    optimization: str = "all",
    threads: int | None = None,
    inter_op_threads: int | None = None,
    parallel: bool = False,
    save_optimized_to: Path | None = None,
) -> onnxruntime.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
    if inter_op_threads:
        options.inter_op_num_threads = inter_op_threads
    if save_optimized_to is not None:
        options.optimized_model_filepath = str(save_optimized_to)
    return options


def session(path: Path, **options) -> onnxruntime.InferenceSession:
    """A CPU session; keyword arguments go to session_options()."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(**options), providers=["CPUExecutionProvider"])


def output_difference(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    import numpy as np

    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return {
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }
