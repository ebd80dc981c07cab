"""ONNX Runtime and OpenVINO builds from a real ONNX file, opened and run through the Runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.hashing import hash_tree
from optimize.registries import RUNTIMES
from optimize.runtimes.base import version_matches
from optimize.targets import builtin_device_classes
from tests.assets.tiny_models import export_tiny_cnn


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = export_tiny_cnn(folder)
    write_artifact_meta(folder, ArtifactKind.ONNX, "model.onnx", precision="fp32")
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return Artifact.open(folder, hash_tree(folder)), x, expected


@pytest.mark.parametrize("name", ["x86-cpu-onnxruntime", "intel-cpu-openvino"])
def test_build_open_run(name, onnx_model, tmp_path):
    artifact, x, expected = onnx_model
    device_class = builtin_device_classes()[name]
    runtime = RUNTIMES.get(device_class.runtime)()
    assert runtime.availability(device_class).can_run
    info = runtime.build(artifact, device_class, tmp_path)
    engine = Artifact.open(tmp_path, hash_tree(tmp_path))
    assert engine.kind == ArtifactKind.ENGINE and engine.file.exists()
    assert engine.meta["runtime_version"] == runtime.version()
    runner = runtime.open(engine, device_class)
    (output,) = runner.run({"images": x})
    # OpenVINO's CPU plugin runs non-quantized layers in bf16 where the CPU has it (the default).
    np.testing.assert_allclose(output, expected, atol=5e-3)
    assert runner.timed_run({"images": x[:1]}) > 0
    assert isinstance(info, dict)


def test_arm64_class_builds_here_but_does_not_run():
    device_class = builtin_device_classes()["arm64-cpu-onnxruntime"]
    availability = RUNTIMES.get("onnxruntime")().availability(device_class)
    import platform

    if platform.machine() == "x86_64":
        assert availability.can_build and not availability.can_run
        assert "aarch64" in availability.reason


@pytest.mark.parametrize(
    "installed, line, expected",
    [
        ("10.3.0", "10.*", True),
        ("11.0.1", "10.*", False),
        ("10.3.0", "10", True),
        ("1.32.0", ">=1.20", True),
        ("1.19.2", ">=1.20", False),
        ("2026.4.1-22982-e213a147257-releases/2026/4", None, True),
        ("not-installed", "10.*", False),
    ],
)
def test_version_lines(installed, line, expected):
    assert bool(version_matches(installed, line)) is expected


def test_unsigning_relu_activations_is_exact_in_range_saturates_higher_above_and_fuses(tmp_path):
    """A symmetric (TensorRT-style) QDQ model: signed activations after every ReLU. The rewrite
    leaves outputs bit-identical while activations stay within 127·scale, lets the signed file
    saturate at 127·scale where the rewritten one goes on to 255·scale (what the build's note
    says and the pipeline measures), and turns the float Conv+ReLU blocks into QLinearConv."""
    import collections

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from optimize.onnx_tools import session
    from optimize.runtimes.onnxruntime import unsign_relu_activations

    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def add_init(name, array):
        inits.append(numpy_helper.from_array(array, name))

    def qdq(name, tensor, scale):
        add_init(f"{name}_s", np.array(scale, np.float32))
        add_init(f"{name}_z", np.array(0, np.int8))
        nodes.append(helper.make_node("QuantizeLinear", [tensor, f"{name}_s", f"{name}_z"], [f"{name}_q"]))
        nodes.append(
            helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"])
        )
        return f"{name}_dq"

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
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        current = qdq(f"a{index}", f"r{index}", 0.05)
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes,
        "symmetric",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "signed.onnx")
    assert unsign_relu_activations(model) == 3
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "unsigned.onnx")

    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    signed_out = session(tmp_path / "signed.onnx").run(None, {"x": x})[0]
    unsigned_out = session(tmp_path / "unsigned.onnx").run(None, {"x": x})[0]
    np.testing.assert_array_equal(signed_out, unsigned_out)

    # Inputs at the input quantizer's limit drive the first layer's ReLU outputs past 127 · 0.05:
    # the signed file saturates them there, the rewritten one does not, and the outputs differ.
    loud = np.sign(x) * 2.54
    signed_loud = session(tmp_path / "signed.onnx").run(None, {"x": loud})[0]
    unsigned_loud = session(tmp_path / "unsigned.onnx").run(None, {"x": loud})[0]
    assert not np.array_equal(signed_loud, unsigned_loud)

    def fused(path):
        session(path, save_optimized_to=tmp_path / "optimized.onnx")
        return collections.Counter(n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node)[
            "QLinearConv"
        ]

    assert fused(tmp_path / "unsigned.onnx") > fused(tmp_path / "signed.onnx")
