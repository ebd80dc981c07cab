"""The rewrites that let ONNX Runtime's integer kernels take a QDQ file, on hand-built QDQ graphs
run through ONNX Runtime: what each keeps identical, what it changes, and that layers fuse."""

from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from optimize.onnx_macs import integer_mac_share
from optimize.onnx_tools import session
from optimize.runtimes.onnxruntime_int8 import prepare, unsign_activations, unsign_after_activations

SHAPE = [1, 3, 8, 8]


def qdq_chain(
    activation: str, zero_points=(0, 0, 0, 0), types=(np.int8,) * 4, scale: float = 0.05, residual=False
):
    """x → Q/DQ → 3 × (Conv → activation → Q/DQ) with INT8 weights; the four activation
    quantizers have the given zero points and types. `residual`: the first layer's quantized
    output is also added to the last one's, read by a second DequantizeLinear (MobileNetV2's
    inverted residual blocks)."""
    quantizers = iter(zip(zero_points, types, strict=True))
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def add_init(name, array):
        inits.append(numpy_helper.from_array(array, name))

    def qdq(name, tensor, scale):
        zero_point, zero_point_type = next(quantizers)
        add_init(f"{name}_s", np.array(scale, np.float32))
        add_init(f"{name}_z", np.array(zero_point, zero_point_type))
        nodes.append(helper.make_node("QuantizeLinear", [tensor, f"{name}_s", f"{name}_z"], [f"{name}_q"]))
        nodes.append(
            helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"])
        )
        return f"{name}_dq"

    add_init("clip_min", np.array(0.0, np.float32))
    add_init("clip_max", np.array(6.0, np.float32))
    current = qdq("in", "x", 0.02)
    for index in range(3):
        weights = rng.integers(-127, 127, size=(8, 3 if index == 0 else 8, 3, 3)).astype(np.int8)
        add_init(f"w{index}", weights)
        add_init(f"w{index}_s", np.array(0.002, np.float32))  # activations stay inside the INT8 range
        add_init(f"w{index}_z", np.array(0, np.int8))
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"w{index}", f"w{index}_s", f"w{index}_z"], [f"w{index}_dq"]
            )
        )
        nodes.append(helper.make_node("Conv", [current, f"w{index}_dq"], [f"c{index}"], pads=[1, 1, 1, 1]))
        if activation == "Relu":
            nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        elif activation == "Clip":
            nodes.append(helper.make_node("Clip", [f"c{index}", "clip_min", "clip_max"], [f"r{index}"]))
        else:
            nodes.append(helper.make_node("Identity", [f"c{index}"], [f"r{index}"]))
        current = qdq(f"a{index}", f"r{index}", scale)
    if residual:
        nodes.append(helper.make_node("DequantizeLinear", ["a0_q", "a0_s", "a0_z"], ["a0_again"]))
        nodes.append(helper.make_node("Add", [current, "a0_again"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, x):
    return session_for(model).run(None, {"x": x})[0]


def session_for(model):
    import onnxruntime as ort

    from optimize.onnx_tools import session_options

    return ort.InferenceSession(
        model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )


def optimized(model, tmp_path) -> onnx.ModelProto:
    """The graph as ONNX Runtime will execute it (its own optimisation, saved)."""
    onnx.save(model, tmp_path / "model.onnx")
    session(tmp_path / "model.onnx", optimization="extended", save_optimized_to=tmp_path / "optimized.onnx")
    return onnx.load(tmp_path / "optimized.onnx")


def op_counts(model, tmp_path) -> collections.Counter:
    return collections.Counter(node.op_type for node in optimized(model, tmp_path).graph.node)


def x_values(scale: float = 1.0):
    return (np.random.default_rng(1).standard_normal(SHAPE) * scale).astype(np.float32)


def test_signed_activations_become_unsigned_bit_for_bit_and_every_conv_runs_in_int8(tmp_path):
    """Activations that alternate between int8 and uint8 (NNCF's: signed where values can be
    negative), one read twice (a residual): + 128 is the same quantizer, so the outputs stay
    identical, even beyond the calibrated range, and every Conv fuses. (That NNCF's own file of
    such blocks does not fuse without it is tests/quantization/test_cpu_int8.py's.)"""
    signed = qdq_chain("none", zero_points=(-3, 125, 4, 128), types=(np.int8, np.uint8) * 2, residual=True)
    unsigned = onnx.ModelProto()
    unsigned.CopyFrom(signed)
    assert unsign_activations(unsigned) == 2
    onnx.checker.check_model(unsigned)
    for scale in (1.0, 50.0):
        np.testing.assert_array_equal(run(signed, x_values(scale)), run(unsigned, x_values(scale)))
    assert op_counts(unsigned, tmp_path)["QLinearConv"] == 3
    assert integer_mac_share(optimized(unsigned, tmp_path)) == 1.0


def test_unsigning_relu_activations_is_exact_in_range_saturates_higher_above_and_fuses(tmp_path):
    """A symmetric (TensorRT-style) QDQ model: signed activations after every ReLU. The rewrite
    leaves outputs bit-identical while activations stay within 127·scale, lets the signed file
    saturate at 127·scale where the rewritten one goes on to 255·scale (what the build's note
    says and the pipeline measures), and turns the float Conv+ReLU blocks into QLinearConv."""
    signed = qdq_chain("Relu")
    unsigned = onnx.ModelProto()
    unsigned.CopyFrom(signed)
    assert unsign_after_activations(unsigned) == (3, 0)
    onnx.checker.check_model(unsigned)
    x = x_values()
    np.testing.assert_array_equal(run(signed, x), run(unsigned, x))
    # An input patch matching the first filter's signs at the input quantizer's limit drives that
    # ReLU output past 127 · 0.05: the signed file saturates it, the rewritten one does not.
    first_filter = numpy_helper.to_array(next(t for t in signed.graph.initializer if t.name == "w0"))[0]
    loud = x.copy()
    loud[0, :, 3:6, 3:6] = 2.54 * np.sign(first_filter)
    assert not np.array_equal(run(signed, loud), run(unsigned, loud))
    assert op_counts(unsigned, tmp_path)["QLinearConv"] > op_counts(signed, tmp_path)["QLinearConv"]


def test_a_relu6_is_folded_into_its_quantizer_at_the_same_saturation_and_the_conv_fuses(tmp_path):
    """Signed zero-point-0 quantizers after Clip(0, 6) with 127·scale = 5.08: the rewritten
    quantizer saturates at the same 5.08 in twice the steps, so the Clip goes and the Conv fuses."""
    signed = qdq_chain("Clip", scale=0.04)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(signed)
    assert prepare(rewritten, unsigned_after_activations=True) == {
        "unsigned_relu": 0,
        "clip_folded": 3,
        "unsigned": 1,  # the input quantizer: exact
    }
    onnx.checker.check_model(rewritten)
    counts = op_counts(rewritten, tmp_path)
    assert counts["QLinearConv"] == 3 and counts["Clip"] == 0
    for x in (x_values(), x_values(20.0)):  # within the range, and far beyond it
        signed_out, rewritten_out = run(signed, x), run(rewritten, x)
        assert max(signed_out.max(), rewritten_out.max()) <= 127 * 0.04 * (1 + 1e-5)  # one saturation
        # rounding on two grids, compounded over three layers: within three steps of the old grid
        np.testing.assert_allclose(rewritten_out, signed_out, atol=3 * 0.04)


def test_a_clip_wider_than_the_quantizer_can_hold_is_left_alone():
    """127·scale = 12.7 > 6: the halved quantizer would not saturate at the Clip's 6."""
    model = qdq_chain("Clip", scale=0.1)
    assert unsign_after_activations(model) == (0, 0)


def test_without_the_inexact_rewrites_only_the_exact_one_runs():
    model = qdq_chain("Relu")
    assert prepare(model, unsigned_after_activations=False) == {
        "unsigned_relu": 0,
        "clip_folded": 0,
        "unsigned": 4,  # every quantizer, exactly: the Relus stay, unfused
    }
