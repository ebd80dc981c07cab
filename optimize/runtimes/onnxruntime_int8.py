"""Rewrites that let ONNX Runtime's CPU integer kernels take a QDQ file.

ONNX Runtime turns DequantizeLinear → Conv/MatMul/Add → QuantizeLinear into one integer op
(QLinearConv, QLinearMatMul, QLinearAdd) only when the op's input and output activations have
the same 8-bit type, and drops a Relu or Clip before a QuantizeLinear only when the quantizer's
own range already clamps as they do. A file made for every runtime breaks both: NNCF stores
non-negative activations as uint8 and the rest as int8, and TensorRT needs every activation as
signed int8 with a zero point of 0. Left alone, ONNX Runtime runs those layers in float between
quantize/dequantize pairs, slower than the FP32 model (MobileNetV2: 13 of 52 convolutions fused).

Three rewrites, each counted in the build details:
- `unsigned`: every int8 activation quantizer becomes uint8 with its zero point + 128. The same
  values, bit for bit: q' = q + 128 for every stored q, and the dequantized value is unchanged.
- `unsigned_relu`: a signed quantizer with zero point 0 after a Relu becomes uint8 with zero
  point 0 at the same scale, so the Relu is dropped and the layer fuses. Values up to 127·scale
  are stored as before; the signed file saturates above that, the rewritten one at 255·scale.
- `clip_folded`: the same after a Clip(0, m) (ReLU6), but at half the scale, so the quantizer
  still saturates where the signed file did (127·scale ≤ m) and the Clip can be dropped: the same
  range in twice as many steps.
The last two change what the engine computes, so the pipeline measures the engine against the
model file (Runtime.inexact_rewrite).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


class _Graph:
    """Lookups over one graph, and initializers added under new names."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.constants = {
            node.output[0]: node.attribute[0].t for node in graph.node if node.op_type == "Constant"
        }
        self.producers = {output: node for node in graph.node for output in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def constant(self, name: str):
        """The value of an initializer or Constant output, or None."""
        from onnx import numpy_helper

        tensor = self.initializers.get(name, self.constants.get(name))
        return None if tensor is None else numpy_helper.to_array(tensor)

    def add(self, name: str, array) -> str:
        from onnx import numpy_helper

        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(array, name)
            self.model.graph.initializer.append(self.initializers[name])
        return name

    def activation_quantizers(self):
        """QuantizeLinear nodes of activations (not of constants) with an initializer zero point,
        and the DequantizeLinear nodes that read each."""
        for node in self.model.graph.node:
            if (
                node.op_type != "QuantizeLinear"
                or len(node.input) < 3
                or node.input[2] not in self.initializers
            ):
                continue
            if node.input[0] in self.initializers or node.input[0] in self.constants:
                continue
            readers = [c for c in self.consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]
            yield node, readers


def _retype(model: onnx.ModelProto, names: set[str], elem_type: int) -> None:
    for value in model.graph.value_info:
        if value.name in names:
            value.type.tensor_type.elem_type = elem_type


def _requantize(node, readers, zero_point: str, scale: str | None = None) -> None:
    """Point a quantizer and its readers at another zero point (and scale)."""
    for user in (node, *readers):
        user.input[2] = zero_point
        if scale is not None:
            user.input[1] = scale


def unsign_after_activations(model: onnx.ModelProto) -> tuple[int, int]:
    """The inexact rewrites (`unsigned_relu`, `clip_folded`), in place; returns their counts."""
    import numpy as np
    import onnx

    graph = _Graph(model)
    relu = clip = 0
    retyped = set()
    for node, readers in list(graph.activation_quantizers()):
        source = graph.producers.get(node.input[0])
        zero_point, scale = graph.constant(node.input[2]), graph.constant(node.input[1])
        signed = graph.initializers[node.input[2]].data_type == onnx.TensorProto.INT8
        if source is None or not signed or np.any(zero_point != 0):
            continue
        bounds = _clip_bounds(graph, source) if source.op_type == "Clip" else None
        folds_clip = (
            bounds is not None
            and bounds[0] == 0
            and scale is not None
            and np.all(127 * scale <= bounds[1] * (1 + 1e-6))
        )
        if source.op_type != "Relu" and not folds_clip:
            continue
        unsigned = graph.add(f"{node.input[2]}_uint8", np.zeros(zero_point.shape, np.uint8))
        if folds_clip:
            halved = graph.add(f"{node.input[1]}_uint8", (scale * np.float32(127 / 255)).astype(np.float32))
            _requantize(node, readers, unsigned, halved)
            clip += 1
        else:
            _requantize(node, readers, unsigned)
            relu += 1
        retyped.add(node.output[0])
    _retype(model, retyped, onnx.TensorProto.UINT8)
    return relu, clip


def _clip_bounds(graph: _Graph, node) -> tuple[float, float] | None:
    """(min, max) of a Clip with constant bounds (inputs from opset 11, attributes before)."""
    attributes = {a.name: a.f for a in node.attribute}
    if "min" in attributes or "max" in attributes:
        return attributes.get("min", -float("inf")), attributes.get("max", float("inf"))
    bounds = []
    for index, default in ((1, -float("inf")), (2, float("inf"))):
        if len(node.input) <= index or not node.input[index]:
            bounds.append(default)
            continue
        value = graph.constant(node.input[index])
        if value is None:
            return None
        bounds.append(float(value))
    return bounds[0], bounds[1]


def unsign_activations(model: onnx.ModelProto) -> int:
    """The exact rewrite (`unsigned`), in place: every int8 activation quantizer as uint8 with its
    zero point + 128. Returns how many quantizers changed."""
    import numpy as np
    import onnx

    graph = _Graph(model)
    retyped = set()
    for node, readers in list(graph.activation_quantizers()):
        if graph.initializers[node.input[2]].data_type != onnx.TensorProto.INT8:
            continue
        shifted = (graph.constant(node.input[2]).astype(np.int16) + 128).astype(np.uint8)
        _requantize(node, readers, graph.add(f"{node.input[2]}_plus128", shifted))
        retyped.add(node.output[0])
    _retype(model, retyped, onnx.TensorProto.UINT8)
    _drop_unused_initializers(model)
    return len(retyped)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used.update(value.name for value in model.graph.output)
    kept = [tensor for tensor in model.graph.initializer if tensor.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def prepare(model: onnx.ModelProto, unsigned_after_activations: bool) -> dict[str, int]:
    """All rewrites in order, in place: the inexact ones first (they need zero points of 0),
    then the exact one for every int8 activation left."""
    relu, clip = unsign_after_activations(model) if unsigned_after_activations else (0, 0)
    return {"unsigned_relu": relu, "clip_folded": clip, "unsigned": unsign_activations(model)}
