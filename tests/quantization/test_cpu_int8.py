"""NNCF's INT8 file of a MobileNetV2 (inverted residual blocks: depthwise convolutions, ReLU6,
residual additions) built for both CPU runtimes: the share of the MACs their kernels run in INT8,
read from what each runtime executes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.hashing import hash_tree
from optimize.onnx_macs import integer_mac_share
from optimize.quantization.base import validate_params
from optimize.quantization.nncf_int8 import quantize
from optimize.registries import RUNTIMES
from optimize.targets import builtin_device_classes

SHAPE = [1, 3, 32, 32]


@pytest.fixture(scope="module")
def int8_mobilenet(tmp_path_factory) -> Artifact:
    import torchvision

    folder = tmp_path_factory.mktemp("mobilenet")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.35).eval()
    torch.onnx.export(
        model,
        torch.randn(SHAPE),
        folder / "fp32.onnx",
        input_names=["images"],
        opset_version=17,
        dynamo=False,
    )
    rng = np.random.default_rng(0)
    calibration = [{"images": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(16)]
    quantized = quantize(
        onnx.load(folder / "fp32.onnx"), calibration, validate_params(precision="int8"), "cpu"
    )
    (folder / "fp32.onnx").unlink()
    onnx.save(quantized, folder / "model.onnx")
    write_artifact_meta(
        folder, ArtifactKind.ONNX, "model.onnx", precision="int8", inputs=[{"name": "images", "shape": SHAPE}]
    )
    return Artifact.open(folder, hash_tree(folder))


def built(artifact: Artifact, class_name: str, workdir) -> dict:
    device_class = builtin_device_classes()[class_name]
    return RUNTIMES.get(device_class.runtime)().build(artifact, device_class, workdir)


def test_onnx_runtime_runs_every_convolution_in_int8(int8_mobilenet, tmp_path):
    import onnxruntime as ort

    # As the file comes from NNCF, ONNX Runtime leaves the convolutions next to residual additions
    # in float between QDQ pairs (a quarter of the MACs here).
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "as-is.onnx")
    ort.InferenceSession(str(int8_mobilenet.file), options, providers=["CPUExecutionProvider"])
    as_is = integer_mac_share(onnx.load(tmp_path / "as-is.onnx"), input_shapes={"images": SHAPE})
    (tmp_path / "engine").mkdir()
    info = built(int8_mobilenet, "x86-cpu-onnxruntime", tmp_path / "engine")
    assert as_is < 0.9 and info["int8_mac_share"] >= 0.95
    assert info["int8_rewrites"]["unsigned"] > 0 and info["float_precision"] == "fp32"


def test_openvino_runs_every_convolution_in_int8(int8_mobilenet, tmp_path):
    info = built(int8_mobilenet, "intel-cpu-openvino", tmp_path)
    assert info["int8_mac_share"] >= 0.95 and info["float_precision"] == "fp32"


def test_dynamic_int8_leaves_convolutions_in_float_so_the_file_loads(tmp_path):
    """backend dynamic compresses MatMul/Gemm weights; NNCF would compress a CNN's convolutions
    too, with kernel-shaped scales no DequantizeLinear takes (both CPU runtimes refused the file)."""
    import onnxruntime as ort

    from optimize.quantization.dynamic_int8 import compress_int8
    from tests.assets.tiny_models import export_tiny_cnn

    export_tiny_cnn(tmp_path)
    compressed = compress_int8(
        onnx.load(tmp_path / "model.onnx"), validate_params(precision="int8", backend="dynamic")
    )
    session = ort.InferenceSession(compressed.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 8, 8), np.float32)
    assert session.run(None, {"images": x})[0].shape == (1, 10)
    dequantized = {node.output[0] for node in compressed.graph.node if node.op_type == "DequantizeLinear"}
    layers = {
        node.op_type: node.input[1] in dequantized
        for node in compressed.graph.node
        if node.op_type in ("Conv", "Gemm")
    }
    assert layers == {"Conv": False, "Gemm": True}
