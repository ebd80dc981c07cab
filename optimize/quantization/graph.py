"""Reading ONNX graphs before and after quantization: which layers carry weights, which of them
ended up quantized, and whether an ignored scope names things that exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optimize.registry import did_you_mean

if TYPE_CHECKING:
    import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MATMUL_OPS = ("Gemm", "MatMul")
PACKED_WEIGHT_OPS = ("MatMulNBits",)  # ONNX Runtime's INT4 MatMul: the op itself holds the weight
INT4_TYPES = (21, 22)  # onnx.TensorProto.UINT4, INT4


def _constant_names(model: onnx.ModelProto) -> set[str]:
    names = {tensor.name for tensor in model.graph.initializer}
    names.update(output for node in model.graph.node if node.op_type == "Constant" for output in node.output)
    return names


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


def weighted_layers(model: onnx.ModelProto, op_types: tuple[str, ...] = WEIGHTED_OPS) -> list[onnx.NodeProto]:
    """Layers whose second input is a weight: a constant, or a DequantizeLinear of one."""
    constants = _constant_names(model)
    producers = _producers(model)
    layers = []
    for node in model.graph.node:
        if node.op_type not in op_types or len(node.input) < 2:
            continue
        weight = node.input[1]
        source = producers.get(weight)
        if weight in constants or (
            source is not None and source.op_type == "DequantizeLinear" and source.input[0] in constants
        ):
            layers.append(node)
    return layers


def kinds_without_matmul_weights(model: onnx.ModelProto, ignored_nodes: list[str]) -> list[str] | None:
    """For a method that compresses MatMul/Gemm weights: None when the model has some outside
    `ignored_nodes`, else the kinds of weighted layer it has instead (['none'] for none)."""
    if any(node.name not in ignored_nodes for node in weighted_layers(model, MATMUL_OPS)):
        return None
    return sorted({node.op_type for node in weighted_layers(model)}) or ["none"]


def quantized_layer_names(model: onnx.ModelProto) -> list[str]:
    """Layers that read their weight through a DequantizeLinear, plus packed INT4 MatMuls."""
    producers = _producers(model)
    names = [
        node.name
        for node in weighted_layers(model)
        if producers.get(node.input[1]) is not None and producers[node.input[1]].op_type == "DequantizeLinear"
    ]
    return names + [node.name for node in model.graph.node if node.op_type in PACKED_WEIGHT_OPS]


def float_layer_names(model: onnx.ModelProto) -> list[str]:
    """Layers that still read a floating-point weight directly."""
    constants = _constant_names(model)
    return [node.name for node in weighted_layers(model) if node.input[1] in constants]


def int4_layer_names(model: onnx.ModelProto) -> list[str]:
    """Layers whose weight is stored in 4 bits (MatMulNBits, or DequantizeLinear of an INT4 tensor)."""
    int4_tensors = {t.name for t in model.graph.initializer if t.data_type in INT4_TYPES}
    producers = _producers(model)
    names = [node.name for node in model.graph.node if node.op_type in PACKED_WEIGHT_OPS]
    for node in weighted_layers(model, MATMUL_OPS):
        source = producers.get(node.input[1])
        if source is not None and source.op_type == "DequantizeLinear" and source.input[0] in int4_tensors:
            names.append(node.name)
    return names


def activation_storage(model: onnx.ModelProto) -> str:
    """How the activation quantizers (QuantizeLinear nodes) store values, read from the graph."""
    from onnx import TensorProto, numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    zero_points = [
        initializers[node.input[2]]
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in initializers
    ]
    if any(numpy_helper.to_array(zero_point).any() for zero_point in zero_points):
        return "asymmetric"
    if any(zero_point.data_type == TensorProto.UINT8 for zero_point in zero_points):
        return "symmetric (zero point 0), uint8 where non-negative"
    return "symmetric signed int8 (zero point 0)"


def scope_problems(model: onnx.ModelProto, names: list[str], types: list[str]) -> list[str]:
    """An ignored scope naming nodes or op types the model lacks is a typo, not a no-op."""
    node_names = [node.name for node in model.graph.node]
    op_types = sorted({node.op_type for node in model.graph.node})
    problems = [
        f"ignored_nodes: no node named '{name}'{did_you_mean(name, node_names)}"
        for name in names
        if name not in node_names
    ]
    problems += [
        f"ignored_types: no '{op_type}' node in the model{did_you_mean(op_type, op_types)}; its op types: {', '.join(op_types)}"
        for op_type in types
        if op_type not in op_types
    ]
    return problems


def nodes_of_types(model: onnx.ModelProto, types: list[str]) -> list[str]:
    return [node.name for node in model.graph.node if node.op_type in types]
