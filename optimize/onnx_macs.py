"""Multiply-accumulates (MACs) of one inference, read from an ONNX graph, or None when they cannot be known.

Export and quantisation rewrite the graph, so a count copied forward from the torch model is a claim the
code does not back. This sizes the MAC-doing nodes of the ONNX graph itself; one node it cannot size makes
the whole answer None, because a partial sum would read as a real, smaller model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

# op -> (A, B) input indices; transA / transB attributes apply where the op has them (Gemm, FusedMatMul).
_MATMUL = {
    "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "FusedMatMul": (0, 1),
    "DynamicQuantizeMatMul": (0, 1), "MatMulIntegerToFloat": (0, 1),
    "Gemm": (0, 1), "FusedGemm": (0, 1), "QGemm": (0, 3),
}  # fmt: skip
_CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "FusedConv": 1}  # op -> weight input index
# Ops that multiply-accumulate in integers (MatMulNBits does with accuracy_level 4).
_INTEGER = {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QGemm"}  # fmt: skip
# Standard ops that do MACs this counter does not size, and control flow whose subgraphs it does not walk.
_UNSIZED = {"LSTM", "GRU", "RNN", "Einsum", "DeformConv", "Attention", "If", "Loop", "Scan"}
# Microsoft contrib ops known to do no multiply-accumulates; any other contrib or custom op is unknown.
_CONTRIB_FREE = {
    "BiasAdd", "BiasGelu", "FastGelu", "Gelu", "QuickGelu", "LayerNormalization", "SimplifiedLayerNormalization",
    "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "EmbedLayerNormalization", "RotaryEmbedding",
    "GatherBlockQuantized", "QuantizeLinear", "DequantizeLinear", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax",
    "NhwcMaxPool",
}  # fmt: skip
# Contrib ops whose output 0 has input 0's shape.
_SAME_SHAPE = {
    "BiasAdd", "BiasGelu", "FastGelu", "Gelu", "QuickGelu", "LayerNormalization", "SimplifiedLayerNormalization",
    "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "RotaryEmbedding", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearSoftmax", "QuantizeLinear", "DequantizeLinear",
}  # fmt: skip
_STANDARD = ("", "ai.onnx")
# Contrib op -> the input whose element type its output 0 takes (the output zero point, or a float scale).
_TYPE_FROM = {
    "MatMulIntegerToFloat": 2, "QGemm": 8, "QLinearAdd": 7, "QLinearMul": 7, "QLinearGlobalAveragePool": 4,
    "QLinearSigmoid": 4, "QLinearLeakyRelu": 4, "QLinearSoftmax": 4, "QuantizeLinear": 2, "DequantizeLinear": 1,
}  # fmt: skip
_INDEX_TYPES = {onnx.TensorProto.INT32, onnx.TensorProto.INT64}
_FOLD_LIMIT = 1 << 16  # elements: shape arithmetic and masks, not activations

Shape = tuple[int, ...]
ShapeOf = Callable[[str], "Shape | None"]


def onnx_macs(
    model: onnx.ModelProto, batch: int = 1, *, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> int | None:
    """MACs of one inference of `model`, or None when any MAC-doing node cannot be sized.

    `input_shapes` gives whole shapes by input name (the example inputs the pipeline already has); inputs
    not named there get `batch` for an unknown dim 0 and keep their other dims. A symbolic dim left over
    anywhere a counted node needs it makes the answer None.
    """
    counted = node_macs(model, batch, input_shapes=input_shapes)
    return None if counted is None else sum(macs for _, macs in counted)


def integer_mac_share(
    model: onnx.ModelProto, batch: int = 1, *, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> float | None:
    """The share of the MACs that integer kernels do (QLinearConv, MatMulInteger, MatMulNBits with
    int8 compute, …), read from a graph as a runtime will execute it (ONNX Runtime's optimised
    graph): a QDQ pair around a float Conv counts as float, because that is how it runs."""
    counted = node_macs(model, batch, input_shapes=input_shapes)
    total = sum(macs for _, macs in counted or [])
    if not total:
        return None
    return sum(macs for node, macs in counted if _integer_compute(node)) / total


def _integer_compute(node: onnx.NodeProto) -> bool:
    if node.op_type == "MatMulNBits":  # accuracy_level 4: activations quantized to int8 on the fly
        return any(a.name == "accuracy_level" and a.i == 4 for a in node.attribute)
    return node.op_type in _INTEGER


def node_macs(
    model: onnx.ModelProto, batch: int = 1, *, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> list[tuple[onnx.NodeProto, int]] | None:
    """Every node with its MACs (0 for most), or None when any MAC-doing node cannot be sized."""
    skeleton, known = _with_inputs(_skeleton(model), batch, input_shapes or {})
    try:
        graph, shape = _inferred(skeleton, known)
    except Exception:  # onnx rejects graphs it cannot read; then nothing in them can be sized
        return None
    counted = []
    for node in graph.node:
        macs = _node_macs(node, shape)
        if macs is None:
            return None
        counted.append((node, macs))
    return counted


def _inferred(model: onnx.ModelProto, known: Mapping[str, int]) -> tuple[onnx.GraphProto, ShapeOf]:
    """ONNX shape inference, rerun while this can fill in what it leaves open.

    Two gaps: ONNX does not know onnxruntime's contrib ops (all after a FusedConv or a MatMulNBits stays
    unsized), and its data propagation stops at shape arithmetic such as Where or Range (a Hugging Face
    export's position ids), so shape subgraphs whose inputs have become known are folded to constants.
    """
    filled: set[str] = set()
    unfoldable: set[str] = set()
    for _ in range(len(model.graph.node) + 1):
        # inferred value_info is not fed back: dims it left symbolic would outlive the folds that fix them
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True).graph
        shapes, types = _shapes(inferred, known)
        shape = _lookup(inferred, shapes)
        folded = _fold(model, shape, unfoldable)
        found = {
            node.output[0]: helper.make_tensor_value_info(node.output[0], _contrib_type(node, types), dims)
            for node in model.graph.node
            if node.domain == "com.microsoft" and node.output[0] not in filled
            for dims in [_contrib_output(node, shape)]
            if dims is not None
        }
        if not folded and not found:
            break
        filled.update(found)
        graph = model.graph
        nodes = [node for node in graph.node if not set(node.output) <= folded.keys()]
        graph.ClearField("node")
        graph.node.extend(nodes)
        graph.initializer.extend(folded.values())
        values = [value for value in graph.value_info if value.name not in found]  # what follows from
        graph.ClearField("value_info")  # the inputs outranks what a writer declared
        graph.value_info.extend([*values, *found.values()])
    return inferred, shape


def _lookup(graph: onnx.GraphProto, shapes: Mapping[str, tuple[int | None, ...]]) -> ShapeOf:
    """Fully known dims by name; a QDQ weight has its quantised initializer's shape."""
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}

    def shape(name: str) -> Shape | None:
        dims = shapes.get(name)
        if dims is None and name in dequantized:
            dims = shapes.get(dequantized[name])
        return None if dims is None or None in dims else dims

    return shape


def _fold(model: onnx.ModelProto, shape: ShapeOf, unfoldable: set[str]) -> dict[str, onnx.TensorProto]:
    """Small outputs of standard nodes computable now: Shape / Size of a sized tensor, constant inputs.

    Float weights carry no data in the skeleton, so this folds shape arithmetic, never a layer.
    """
    values = {t.name: a for t in model.graph.initializer for a in [_array(t)] if a is not None}
    folded: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        inputs = [name for name in node.input if name]
        dims = shape(node.input[0]) if node.op_type in ("Shape", "Size") else None
        if node.domain not in _STANDARD or node.op_type in _UNSIZED or "" in node.output:
            continue
        if node.output[0] in unfoldable:
            continue
        if dims is None and not all(name in values for name in inputs):
            continue
        try:
            outputs = (
                [_shape_value(node, dims)] if dims is not None else _evaluate(model, node, inputs, values)
            )
        except Exception:  # the reference evaluator lacks some ops and dtypes; leave those to inference
            outputs = None
        if outputs is None or any(np.size(value) > _FOLD_LIMIT for value in outputs):
            unfoldable.add(node.output[0])
            continue
        for name, value in zip(node.output, outputs, strict=True):
            values[name] = np.asarray(value)
            folded[name] = numpy_helper.from_array(values[name], name)
    return folded


def _array(tensor: onnx.TensorProto) -> np.ndarray | None:
    """The tensor's values, None for a stripped weight (dims without data) or a large one."""
    if math.prod(tensor.dims) > _FOLD_LIMIT:
        return None
    try:
        return numpy_helper.to_array(tensor)
    except Exception:  # no data, or external data: not a shape constant
        return None


def _shape_value(node: onnx.NodeProto, dims: Shape) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(math.prod(dims), np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    return np.array(dims, np.int64)[attrs.get("start", 0) : attrs.get("end", len(dims))]


def _evaluate(model: onnx.ModelProto, node: onnx.NodeProto, inputs: list[str], values: Mapping) -> list:
    names = list(dict.fromkeys(inputs))
    function = helper.make_function("fold", "node", names, node.output, [node], model.opset_import)
    return ReferenceEvaluator(function).run(None, {name: values[name] for name in names}, attributes={})


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without weight data: inference needs only their dims, and protobuf stops at 2 GB."""
    g = model.graph
    # integer tensors stay whole: Reshape targets and the like feed shape inference
    kept = [t if t.data_type in _INDEX_TYPES else _dims_only(t) for t in g.initializer]
    graph = helper.make_graph(g.node, g.name, g.input, g.output, kept, value_info=g.value_info)
    # onnxruntime runs contrib ops without their domain imported (NNCF writes such models); onnx refuses
    imported = {opset.domain for opset in model.opset_import}
    missing = {node.domain for node in g.node} - imported - set(_STANDARD)
    opsets = [*model.opset_import, *(helper.make_opsetid(domain, 1) for domain in sorted(missing))]
    return helper.make_model(
        graph, opset_imports=opsets, ir_version=model.ir_version, functions=model.functions
    )


def _dims_only(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)


def _with_inputs(
    model: onnx.ModelProto, batch: int, input_shapes: Mapping[str, Sequence[int]]
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Fix the graph inputs' shapes in place; also return the symbolic dim names now known by value."""
    known: dict[str, int] = {}
    initialized = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initialized or not value.type.HasField("tensor_type"):
            continue
        shape = value.type.tensor_type.shape
        wanted = input_shapes.get(value.name)
        if wanted is not None:
            known.update(
                {d.dim_param: int(size) for d, size in zip(shape.dim, wanted, strict=False) if d.dim_param}
            )
            shape.ClearField("dim")
            for size in wanted:
                shape.dim.add().dim_value = int(size)
        elif shape.dim and not shape.dim[0].HasField("dim_value"):
            if shape.dim[0].dim_param:
                known[shape.dim[0].dim_param] = batch
            shape.dim[0].dim_value = batch
    # Shapes an earlier inference wrote go stale once the inputs change, and merged in they win over what
    # inference works out now; keep only those of ops ONNX cannot infer, where they are resolved.
    domains = {output: node.domain for node in model.graph.node for output in node.output}
    kept = [
        v
        for v in model.graph.value_info
        if v.name in domains and domains[v.name] not in _STANDARD and _resolved(v, known)
    ]
    model.graph.ClearField("value_info")
    model.graph.value_info.extend(kept)
    for value in model.graph.output:
        if domains.get(value.name) in _STANDARD or not _resolved(value, known):
            value.type.tensor_type.ClearField("shape")
    return model, known


def _resolved(value: onnx.ValueInfoProto, known: Mapping[str, int]) -> bool:
    return all(d.HasField("dim_value") or d.dim_param in known for d in value.type.tensor_type.shape.dim)


def _shapes(
    graph: onnx.GraphProto, known: Mapping[str, int]
) -> tuple[dict[str, tuple[int | None, ...]], dict[str, int]]:
    """Name -> dims (None where unknown) and name -> element type.

    A symbolic dim name fixed at the inputs means the same size everywhere in the graph.
    """
    shapes: dict[str, tuple[int | None, ...]] = {}
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        types[value.name] = tensor.elem_type
        if value.type.HasField("tensor_type") and tensor.HasField("shape"):
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else known.get(d.dim_param) if d.dim_param else None
                for d in tensor.shape.dim
            )
    for tensor in graph.initializer:
        shapes[tensor.name], types[tensor.name] = tuple(tensor.dims), tensor.data_type
    return shapes, types


def _contrib_output(node: onnx.NodeProto, shape: ShapeOf) -> Shape | None:
    """Output 0's shape for the contrib ops ONNX does not know, where it follows from the inputs."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in _SAME_SHAPE:
        return shape(node.input[0])
    if node.op_type == "MatMulNBits":
        a = shape(node.input[0])
        return None if a is None else (*a[:-1], attrs["N"])
    if node.op_type == "FusedConv":
        return _conv_output(shape(node.input[0]), shape(node.input[1]), attrs)
    if node.op_type == "QLinearGlobalAveragePool":
        x = shape(node.input[0])
        ones = (1,) * (len(x) - 2) if x else ()
        return None if x is None else (x[0], *ones, x[-1]) if attrs.get("channels_last") else (*x[:2], *ones)
    if node.op_type in ("QLinearAdd", "QLinearMul"):
        a, b = shape(node.input[0]), shape(node.input[3])
        return None if a is None or b is None else tuple(np.broadcast_shapes(a, b))
    if node.op_type in _MATMUL and not (attrs.get("transBatchA") or attrs.get("transBatchB")):
        a, b = (shape(node.input[i]) for i in _MATMUL[node.op_type])
        dims = _matmul_dims(a, b, attrs) if a and b and min(len(a), len(b)) >= 2 else None  # 1-D drops dims
        return None if dims is None else (*dims[0], dims[1], dims[3])
    return None


def _contrib_type(node: onnx.NodeProto, types: Mapping[str, int]) -> int:
    """Output 0's element type: the output zero point's where the op takes one, else input 0's."""
    index = _TYPE_FROM.get(node.op_type, 0)
    if len(node.input) <= index or not node.input[index]:  # no zero point: float out of QGemm
        index = 1 if node.op_type == "QGemm" else 0
    return types.get(node.input[index], 0)


def _node_macs(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """MACs of one node: 0 for ops that do none, None when it does some this cannot size."""
    op, standard = node.op_type, node.domain in _STANDARD
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if op in _MATMUL and not (attrs.get("transBatchA") or attrs.get("transBatchB")):
        dims = _matmul_dims(*(shape(node.input[i]) for i in _MATMUL[op]), attrs)
        return None if dims is None else math.prod(dims[0]) * dims[1] * dims[2] * dims[3]
    if op in _CONV:  # output elements × (C_in / group) × kernel size
        y, w = shape(node.output[0]), shape(node.input[_CONV[op]])
        return None if w is None or y is None else math.prod(y) * math.prod(w[1:])
    if op == "ConvTranspose":  # each input element meets C_out / group filters of the kernel's size
        x, w = shape(node.input[0]), shape(node.input[1])
        return None if x is None or w is None else math.prod(x) * math.prod(w[1:])
    if op == "MatMulNBits":
        a = shape(node.input[0])
        return None if a is None else math.prod(a[:-1]) * attrs["N"] * attrs["K"]
    if standard:
        return None if op in _UNSIZED else 0
    return 0 if node.domain == "com.microsoft" and op in _CONTRIB_FREE else None


def _matmul_dims(a: Shape | None, b: Shape | None, attrs: Mapping) -> tuple[Shape, int, int, int] | None:
    """(broadcast batch dims, M, K, N) of A @ B after the transA / transB attributes."""
    if a is None or b is None:
        return None
    a, b = (1, *a) if len(a) == 1 else a, (*b, 1) if len(b) == 1 else b
    a = (*a[:-2], a[-1], a[-2]) if attrs.get("transA") else a
    b = (*b[:-2], b[-1], b[-2]) if attrs.get("transB") else b
    try:
        return np.broadcast_shapes(a[:-2], b[:-2]), a[-2], a[-1], b[-1]
    except ValueError:
        return None


def _conv_output(x: Shape | None, w: Shape | None, attrs: Mapping) -> Shape | None:
    """Conv output shape from the attributes, for FusedConv, which ONNX shape inference does not know."""
    if x is None or w is None:
        return None
    n, auto_pad = len(w) - 2, attrs.get("auto_pad", b"NOTSET")
    strides, dilations = attrs.get("strides") or [1] * n, attrs.get("dilations") or [1] * n
    if auto_pad in (b"SAME_UPPER", b"SAME_LOWER"):
        return (x[0], w[0], *(-(-size // s) for size, s in zip(x[2:], strides, strict=True)))
    pads = attrs.get("pads") if auto_pad != b"VALID" and attrs.get("pads") else [0] * 2 * n
    sizes = zip(x[2:], w[2:], strides, dilations, pads[:n], pads[n:], strict=True)
    return (x[0], w[0], *((size + p0 + p1 - d * (k - 1) - 1) // s + 1 for size, k, s, d, p0, p1 in sizes))
