"""The builder: parser errors in one message (no TensorRT), and on a GPU host every parser error
reported through a real build."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.errors import TargetError
from optimize.runtimes.tensorrt import TensorRTRuntime
from optimize.runtimes.tensorrt.builder import format_parser_errors
from optimize.runtimes.tensorrt.host import TIMING_CACHE_ENV
from tests.runtimes.tensorrt.common import gpu_class, needs_tensorrt_gpu


def test_parser_errors_are_all_reported():
    message = format_parser_errors(
        Path("/x/model.onnx"),
        [
            {
                "code": "UNSUPPORTED_NODE",
                "node": 3,
                "node_name": "conv_3",
                "operator": "NotARealOp",
                "desc": "No importer registered for op: NotARealOp",
            },
            {
                "code": "INVALID_GRAPH",
                "node": -1,
                "node_name": "",
                "operator": "",
                "desc": "graph has no outputs",
            },
        ],
    )
    assert message.startswith("TensorRT's ONNX parser rejected model.onnx with 2 errors: ")
    assert "[1] node 3 'conv_3' (NotARealOp): UNSUPPORTED_NODE: No importer registered" in message
    assert "[2] model: INVALID_GRAPH: graph has no outputs" in message and "QuantizeBias" not in message
    bias = format_parser_errors(
        "m.onnx",
        [
            {
                "code": "INVALID_NODE",
                "node": 7,
                "node_name": "conv.bias_DequantizeLinear",
                "operator": "DequantizeLinear",
                "desc": "only activation types allowed as input to this layer.",
            }
        ],
    )
    assert (
        bias.startswith("TensorRT's ONNX parser rejected m.onnx with 1 error: ")
        and "QuantizeBias=False" in bias
    )


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_every_parser_error_is_reported(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("NotARealOp", ["images"], ["logits"], domain="com.example", name="mystery")],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    folder = tmp_path / "bad"
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"))
    write_artifact_meta(folder, ArtifactKind.ONNX, "model.onnx", precision="fp32")
    monkeypatch.setenv(TIMING_CACHE_ENV, str(tmp_path / "timing-cache"))
    with pytest.raises(TargetError, match="ONNX parser rejected model.onnx with .*NotARealOp"):
        TensorRTRuntime().build(Artifact.open(folder, "bad"), gpu_class(), tmp_path / "work")
