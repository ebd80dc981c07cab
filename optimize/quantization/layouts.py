"""How quantized weights are laid out for the runtime that runs them, and the rewrites between the
layouts. NNCF's weight compression writes INT8 weights behind DequantizeLinear nodes; which layout
is fast depends on the runtime (measured on all-MiniLM-L6-v2, x86 with AVX-512 VNNI, batch 1
and 32, against the FP32 file on the same runtime):

- `integer`: INT8 weights read by MatMulInteger after a DynamicQuantizeLinear of the activation
  (standard ONNX ops). ONNX Runtime fuses them into DynamicQuantizeMatMul / MatMulIntegerToFloat,
  its integer kernels: 2.2-2.4× FP32. OpenVINO runs the file in float: 0.6-0.8×.
- `nbits`: 8-bit MatMulNBits with int8 compute (accuracy_level 4), ONNX Runtime's contrib op,
  which OpenVINO reads too: ONNX Runtime 1.3-1.4×, OpenVINO 1.4-1.9×.
- `dequantize`: the INT8 weights behind DequantizeLinear, as NNCF writes them. OpenVINO compiles
  them into compressed-weight MatMuls (1.5-1.9×); ONNX Runtime expands them to float on every
  run (0.4×).

Embedding tables (Gather of a quantized table) become GatherBlockQuantized in the `integer` and
`nbits` layouts: ONNX Runtime gathers the rows and dequantizes only those (OpenVINO reads it too).

The rewrites are exact: the same INT8 values, scales and zero points, in another container (the
activations of `integer` and `nbits` are quantized at run time, which is their speed-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from optimize.recipe.schema import Recipe

Int8Format = Literal["integer", "nbits", "dequantize"]
FORMATS: tuple[str, ...] = ("integer", "nbits", "dequantize")

# The fastest layout on each runtime (measured above). This is a property of the runtime and
# belongs on its Runtime class as a declared capability (`int8_weight_format`); a runtime that
# declares one is taken at its word, and this table answers for those that do not yet.
# When the targets' runtimes want different layouts: the one both ONNX Runtime and OpenVINO run
# faster than FP32.
SHARED_FORMAT = "nbits"

KERNELS = {
    "integer": "ONNX Runtime: DynamicQuantizeMatMul / MatMulIntegerToFloat (uint8 activations quantized "
    "per run × int8 weights per output channel); embeddings: GatherBlockQuantized",
    "nbits": "ONNX Runtime: MatMulNBits 8-bit with int8 compute (accuracy_level 4); embeddings: "
    "GatherBlockQuantized",
    "dequantize": "INT8 weights behind DequantizeLinear (OpenVINO: compressed-weight MatMul; ONNX Runtime "
    "expands them to float every run)",
}

CONTRIB_DOMAIN = "com.microsoft"


def runtime_format(runtime: str) -> str:
    """The layout a runtime runs fastest: the `int8_weight_format` it declares (Runtime)."""
    from optimize.registries import RUNTIMES

    return RUNTIMES.get(runtime).int8_weight_format if runtime in RUNTIMES else SHARED_FORMAT


def choose_format(requested: str, recipe: Recipe, no_targets: str) -> tuple[str, str, dict[str, str]]:
    """(layout, why, the layout each target would want) for an `int8_format` option."""
    from optimize.quantization.int8 import target_runtimes

    runtimes = target_runtimes(recipe)
    wanted = {name: runtime_format(runtime) for name, runtime in runtimes.items()}
    if requested != "auto":
        return requested, "set in the recipe", wanted
    if not wanted:
        return no_targets, "no targets", wanted
    formats = set(wanted.values())
    by_runtime = ", ".join(sorted(set(runtimes.values())))
    if len(formats) == 1:
        chosen = formats.pop()
        return chosen, f"the fastest on the targets' runtime ({by_runtime})", wanted
    return (
        SHARED_FORMAT,
        f"the targets' runtimes ({by_runtime}) differ; {SHARED_FORMAT} runs fast on each",
        wanted,
    )


# -- reading the graph ----------------------------------------------------------------------------


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.initializers = {tensor.name: tensor for tensor in model.graph.initializer}
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        tensor = self.initializers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def add(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(array, name)
        self.model.graph.initializer.append(tensor)
        self.initializers[name] = tensor
        return name


class _Weight:
    """A constant 2-D INT8 tensor behind a DequantizeLinear: values as uint8 with a zero point per
    row (axis 0) or per column (axis 1), whatever the stored type and granularity."""

    def __init__(self, node: onnx.NodeProto, graph: _Graph):
        import numpy as np

        self.node = node
        values = graph.array(node.input[0])
        scale = graph.array(node.input[1]) if len(node.input) > 1 else None
        zero = graph.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        self.ok = (
            values is not None
            and scale is not None
            and values.ndim == 2
            and values.dtype in (np.int8, np.uint8)
            and (zero is None or zero.shape == scale.shape)
        )
        if not self.ok:
            return
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % 2
        per_tensor = scale.size == 1
        self.ok = per_tensor or (scale.ndim == 1 and scale.size == values.shape[axis])
        if not self.ok:
            return
        self.axis = axis
        if zero is None:
            zero = np.zeros(scale.shape, values.dtype)
        if values.dtype == np.int8:  # the same values shifted into uint8: q + 128, zero point + 128
            values = (values.astype(np.int16) + 128).astype(np.uint8)
            zero = (zero.astype(np.int16) + 128).astype(np.uint8)
        self.values = values
        length = values.shape[axis]
        self.scale = np.broadcast_to(scale.reshape(-1), (length,)).astype(np.float32)
        self.zero = np.broadcast_to(zero.reshape(-1), (length,)).astype(np.uint8)
        self.per_tensor = per_tensor


def _gemm_as_matmul(node: onnx.NodeProto) -> bool | None:
    """For a Gemm that is a MatMul plus an optional bias (alpha 1, beta 1, A not transposed):
    whether its weight is transposed; None for any other Gemm."""
    attributes = {a.name: (a.i if a.type == a.INT else a.f) for a in node.attribute}
    if (
        attributes.get("transA", 0)
        or attributes.get("alpha", 1.0) != 1.0
        or attributes.get("beta", 1.0) != 1.0
    ):
        return None
    return bool(attributes.get("transB", 0))


def _matmul_weights(graph: _Graph) -> list[tuple[_Weight, list]]:
    """DequantizeLinear nodes of INT8 weights read only as the weight of MatMuls (input B) or of
    Gemms that are a MatMul plus a bias, scaled per output channel (or per tensor). The weight's
    `kn` is its values as [input width, output width] with the scales per output channel."""
    found = []
    for node in graph.model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in graph.initializers:
            continue
        readers = graph.consumers.get(node.output[0], [])
        if not readers or any(
            r.input[1] != node.output[0] or r.op_type not in ("MatMul", "Gemm") for r in readers
        ):
            continue
        transposed = {False if r.op_type == "MatMul" else _gemm_as_matmul(r) for r in readers}
        if None in transposed or len(transposed) != 1:
            continue
        weight = _Weight(node, graph)
        if not weight.ok:
            continue
        transpose = transposed.pop()
        if weight.per_tensor:
            out_width = weight.values.shape[0 if transpose else 1]
            weight.scale = weight.scale[:1].repeat(out_width)
            weight.zero = weight.zero[:1].repeat(out_width)
        elif weight.axis != (0 if transpose else 1):
            continue
        weight.kn = weight.values.T if transpose else weight.values
        found.append((weight, readers))
    return found


def _bias(reader: onnx.NodeProto, output: str) -> tuple[str, list]:
    """Where a MatMul-like replacement writes, and the Add of a Gemm's bias after it."""
    from onnx import helper

    if reader.op_type != "Gemm" or len(reader.input) < 3 or not reader.input[2]:
        return output, []
    product = f"{output}_product"
    return product, [
        helper.make_node("Add", [product, reader.input[2]], [output], name=f"{reader.name}_bias")
    ]


def _gather_tables(graph: _Graph) -> list[tuple[_Weight, list]]:
    """DequantizeLinear nodes of INT8 tables read only by Gather along axis 0, scaled per row."""
    found = []
    for node in graph.model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in graph.initializers:
            continue
        readers = graph.consumers.get(node.output[0], [])
        if not readers or not all(
            r.op_type == "Gather"
            and r.input[0] == node.output[0]
            and next((a.i for a in r.attribute if a.name == "axis"), 0) == 0
            for r in readers
        ):
            continue
        weight = _Weight(node, graph)
        if weight.ok and (weight.axis == 0 or weight.per_tensor) and _row_block(weight.values.shape[1]):
            found.append((weight, readers))
    return found


def _row_block(width: int, largest: int = 128) -> int | None:
    """The largest power of two in [16, largest] that divides a row (GatherBlockQuantized's block)."""
    block = largest
    while block >= 16:
        if width % block == 0:
            return block
        block //= 2
    return None


# -- rewriting ------------------------------------------------------------------------------------


def _contrib(model: onnx.ModelProto) -> None:
    from onnx import helper

    if not any(o.domain == CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))


def _finish(model: onnx.ModelProto, nodes: list) -> None:
    """Replace the graph's nodes (in dependency order) and drop initializers nothing reads."""
    produced = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    ordered, pending = [], list(nodes)
    while pending:
        waiting = []
        for node in pending:
            if all(name in produced for name in node.input):
                ordered.append(node)
                produced.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):  # inputs from outer scopes: keep the rest in their order
            ordered += waiting
            break
        pending = waiting
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    read = {name for node in model.graph.node for name in node.input}
    read.update(output.name for output in model.graph.output)
    kept = [tensor for tensor in model.graph.initializer if tensor.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _nbits_block(k: int) -> int:
    """MatMulNBits' block for a per-column INT8 weight: any power of two >= 16 is exact (the
    column's one scale is repeated per block); 128 where the input width allows."""
    block = 16
    while block < 128 and block < k:
        block *= 2
    return block


def integer_matmuls(model: onnx.ModelProto) -> int:
    """DequantizeLinear(INT8 weight) → MatMul becomes DynamicQuantizeLinear(activation) →
    MatMulInteger → Cast → Mul(activation scale × weight scale), the pattern ONNX Runtime's
    quantize_dynamic writes and fuses into DynamicQuantizeMatMul. In place; returns the count."""
    import numpy as np
    from onnx import TensorProto, helper

    graph = _Graph(model)
    found = _matmul_weights(graph)
    replaced: dict[int, list] = {}  # id of a removed node -> nodes in its place
    quantized: dict[str, tuple[str, str, str]] = {}  # activation -> (uint8, scale, zero point)
    for weight, readers in found:
        base = weight.node.input[0]
        values = graph.add(
            f"{base}_s8", np.ascontiguousarray((weight.kn.astype(np.int16) - 128).astype(np.int8))
        )
        signed_zero = (weight.zero.astype(np.int16) - 128).astype(np.int8)
        # per tensor: scalars (a 1-D zero point of MatMulInteger is one per column)
        zero_point = graph.add(f"{base}_s8_zero_point", signed_zero[0] if weight.per_tensor else signed_zero)
        scale = graph.add(f"{base}_s8_scale", weight.scale[0] if weight.per_tensor else weight.scale)
        replaced[id(weight.node)] = []
        for reader in readers:
            activation = reader.input[0]
            output, bias = _bias(reader, reader.output[0])
            nodes = []
            if activation not in quantized:
                quantized[activation] = (
                    f"{activation}_u8",
                    f"{activation}_u8_scale",
                    f"{activation}_u8_zero_point",
                )
                nodes.append(
                    helper.make_node(
                        "DynamicQuantizeLinear",
                        [activation],
                        list(quantized[activation]),
                        name=f"{activation}_DynamicQuantizeLinear",
                    )
                )
            a, a_scale, a_zero = quantized[activation]
            name = reader.name or output
            nodes += [
                helper.make_node(
                    "MatMulInteger", [a, values, a_zero, zero_point], [f"{output}_i32"], name=f"{name}_quant"
                ),
                helper.make_node("Mul", [a_scale, scale], [f"{output}_scales"], name=f"{name}_scales_mul"),
                helper.make_node(
                    "Cast", [f"{output}_i32"], [f"{output}_f32"], to=TensorProto.FLOAT, name=f"{name}_cast"
                ),
                helper.make_node(
                    "Mul", [f"{output}_f32", f"{output}_scales"], [output], name=f"{name}_rescale"
                ),
                *bias,
            ]
            replaced[id(reader)] = nodes
    if found:
        _finish(model, [new for node in model.graph.node for new in replaced.get(id(node), [node])])
    return len(found)


def nbits_matmuls(model: onnx.ModelProto, accuracy_level: int) -> int:
    """DequantizeLinear(INT8 weight) → MatMul becomes an 8-bit MatMulNBits. In place; the count."""
    import numpy as np
    from onnx import helper

    graph = _Graph(model)
    found = _matmul_weights(graph)
    replaced: dict[int, list] = {}
    for weight, readers in found:
        k, n = weight.kn.shape
        block = _nbits_block(k)
        blocks = -(-k // block)
        padded = np.pad(weight.kn, ((0, blocks * block - k), (0, 0)))
        zero = np.repeat(weight.zero[:, None], blocks, axis=1)
        padded[k:, :] = weight.zero[None, :]  # padding rows dequantize to 0
        base = weight.node.input[0]
        inputs = [
            graph.add(f"{base}_nbits8", np.ascontiguousarray(padded.T.reshape(n, blocks, block))),
            graph.add(f"{base}_nbits8_scales", np.repeat(weight.scale[:, None], blocks, axis=1)),
            graph.add(f"{base}_nbits8_zero_points", np.ascontiguousarray(zero)),
        ]
        replaced[id(weight.node)] = []
        for reader in readers:
            output, bias = _bias(reader, reader.output[0])
            replaced[id(reader)] = [
                helper.make_node(
                    "MatMulNBits",
                    [reader.input[0], *inputs],
                    [output],
                    name=reader.name,
                    domain=CONTRIB_DOMAIN,
                    K=k,
                    N=n,
                    bits=8,
                    block_size=block,
                    accuracy_level=accuracy_level,
                ),
                *bias,
            ]
    if found:
        _contrib(model)
        _finish(model, [new for node in model.graph.node for new in replaced.get(id(node), [node])])
    return len(found)


def block_quantized_gathers(model: onnx.ModelProto) -> int:
    """DequantizeLinear(INT8 table) → Gather becomes an 8-bit GatherBlockQuantized: the rows are
    gathered first and only they are dequantized. In place; returns the count."""
    import numpy as np

    graph = _Graph(model)
    found = _gather_tables(graph)
    replaced: dict[int, list] = {}
    for weight, readers in found:
        rows, width = weight.values.shape
        block = _row_block(width)
        blocks = width // block
        base = weight.node.input[0]
        inputs = [
            graph.add(f"{base}_gbq8", weight.values),
            graph.add(f"{base}_gbq8_scales", np.repeat(weight.scale[:, None], blocks, axis=1)),
            graph.add(f"{base}_gbq8_zero_points", np.repeat(weight.zero[:, None], blocks, axis=1)),
        ]
        if weight.per_tensor:  # one scale for the table: every row repeats it
            inputs[1] = graph.add(
                f"{base}_gbq8_scales_rows", np.full((rows, blocks), weight.scale[0], np.float32)
            )
            inputs[2] = graph.add(
                f"{base}_gbq8_zero_points_rows", np.full((rows, blocks), weight.zero[0], np.uint8)
            )
        replaced[id(weight.node)] = []
        for reader in readers:
            replaced[id(reader)] = [
                _gather_block_quantized([inputs[0], reader.input[1], inputs[1], inputs[2]], reader, block, 8)
            ]
    if found:
        _contrib(model)
        _finish(model, [new for node in model.graph.node for new in replaced.get(id(node), [node])])
    return len(found)


def set_accuracy_level(model: onnx.ModelProto, level: int) -> int:
    """Every MatMulNBits computes at `level` (4: int8). In place; returns the count."""
    from onnx import helper

    count = 0
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        for attribute in list(node.attribute):
            if attribute.name == "accuracy_level":
                node.attribute.remove(attribute)
        node.attribute.append(helper.make_attribute("accuracy_level", level))
        count += 1
    return count


def gathers_from_matmulnbits(model: onnx.ModelProto) -> int:
    """NNCF 3.4 with all_layers compresses an embedding table to INT4 and writes its Gather as a
    MatMulNBits fed with the token indices, which no runtime loads. Each such node becomes the
    4-bit GatherBlockQuantized of the same values, scales and zero points. NNCF's layout (read off
    its output for MiniLM's position table [512, 384], group 128): the table transposed,
    [width, rows], two values per byte, low nibble first, rows padded to the MatMulNBits block;
    scales and zero points (one per byte) [width / group, rows]. Run it before the zero points are
    repacked for MatMulNBits (repair_matmulnbits). In place; returns the count."""
    import numpy as np
    import onnx
    from onnx import TensorProto

    graph = _Graph(model)
    nbits = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    if not nbits:
        return 0
    _contrib(model)  # NNCF writes contrib ops without importing their domain; shape inference needs it
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.input, *inferred.value_info]}
    replaced: dict[int, list] = {}
    for node in nbits:
        if types.get(node.input[0]) not in (TensorProto.INT64, TensorProto.INT32):
            continue
        attributes = {a.name: a.i for a in node.attribute}
        rows, width = attributes["K"], attributes["N"]
        packed, scales = graph.array(node.input[1]), graph.array(node.input[2])
        zero = graph.array(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if packed is None or scales is None or attributes.get("bits", 4) != 4 or scales.size % rows:
            raise ValueError(
                f"{node.name}: an embedding Gather written as MatMulNBits in a layout not known here"
            )
        blocks = scales.size // rows
        block = width // blocks if width % blocks == 0 else 0
        if block < 16 or block & (block - 1) or (zero is not None and zero.size != scales.size):
            raise ValueError(
                f"{node.name}: an embedding Gather written as MatMulNBits in a layout not known here"
            )
        nibbles = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(width, -1)[:, :rows].T
        values = np.ascontiguousarray(nibbles)  # [rows, width]
        zeros = np.full((rows, blocks), 8, np.uint8) if zero is None else zero.reshape(blocks, rows).T
        if blocks % 2:
            zeros = np.pad(zeros, ((0, 0), (0, 1)))
        base = node.input[1]
        inputs = [
            graph.add(f"{base}_gbq4", (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)),
            node.input[0],
            graph.add(f"{base}_gbq4_scales", np.ascontiguousarray(scales.reshape(blocks, rows).T)),
            graph.add(f"{base}_gbq4_zero_points", (zeros[:, 0::2] | (zeros[:, 1::2] << 4)).astype(np.uint8)),
        ]
        replaced[id(node)] = [_gather_block_quantized(inputs, node, block, 4)]
    if replaced:
        _finish(model, [new for node in model.graph.node for new in replaced.get(id(node), [node])])
    return len(replaced)


def convert(model: onnx.ModelProto, int8_format: str, accuracy_level: int = 4) -> dict[str, int]:
    """Lay out a model's INT8 weights (behind DequantizeLinear) as `int8_format`, in place; the
    layers rewritten, by kind."""
    if int8_format == "dequantize":
        return {}
    matmuls = integer_matmuls(model) if int8_format == "integer" else nbits_matmuls(model, accuracy_level)
    return {f"{int8_format}_matmuls": matmuls, "block_quantized_gathers": block_quantized_gathers(model)}


def contrib_ops(model: onnx.ModelProto) -> list[str]:
    """Op types of ONNX Runtime's contrib domain in the graph (runtimes other than ONNX Runtime and
    OpenVINO do not read them)."""
    return sorted({node.op_type for node in model.graph.node if node.domain == CONTRIB_DOMAIN})


def _gather_block_quantized(inputs: list[str], replacing, block: int, bits: int):
    """ONNX Runtime's GatherBlockQuantized in place of `replacing` (same name and outputs): rows of
    a table quantized in blocks of `block` along each row."""
    from onnx import helper

    return helper.make_node(
        "GatherBlockQuantized",
        inputs,
        list(replacing.output),
        name=replacing.name,
        domain=CONTRIB_DOMAIN,
        gather_axis=0,
        quantize_axis=1,
        block_size=block,
        bits=bits,
    )
