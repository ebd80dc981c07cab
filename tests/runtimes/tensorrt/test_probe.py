"""Host probes: the parsers of what they read, GPU detection on this host, and the ONNX inputs."""

from __future__ import annotations

import pytest

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.runtimes.tensorrt.host import parse_version
from optimize.runtimes.tensorrt.plan import InputShape
from optimize.runtimes.tensorrt.probe import (
    cuda_version_text,
    detect_gpu,
    no_gpu_reason,
    onnx_input_shapes,
    parse_driver_version,
    parse_tegra_release,
)


def test_gpu_detection_reports_why_there_is_none():
    facts, reason = detect_gpu()
    if facts is not None:
        pytest.skip(f"this host has {facts.name}")
    assert reason.startswith("no CUDA GPU is visible") or reason.startswith("cuda-python is not installed")


# -- small parsers and messages -----------------------------------------------------------------
def test_host_fact_parsers():
    tegra = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"
    assert parse_tegra_release(tegra) == "36.4.3" and parse_tegra_release("") is None
    assert (
        parse_driver_version(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024"
        )
        == "550.54.15"
    )
    assert (
        parse_driver_version(
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  540.4.0  Release Build"
        )
        == "540.4.0"
    )
    assert parse_driver_version("nothing") is None
    assert (
        no_gpu_reason("cudaErrorInsufficientDriver", 13050, 0)
        == "no CUDA GPU is visible: no NVIDIA driver is loaded (cudaErrorInsufficientDriver)"
    )
    assert (
        "driver supports CUDA 12.8, older than the CUDA 13.5 of the installed cuda-python; install cuda-python 12.x"
        in no_gpu_reason("cudaErrorInsufficientDriver", 13050, 12080)
    )
    assert "CUDA_VISIBLE_DEVICES" in no_gpu_reason("cudaErrorNoDevice", 12060, 12080)
    assert (
        cuda_version_text(12060) == "12.6"
        and cuda_version_text(13000) == "13.0"
        and cuda_version_text(0) == "none"
    )
    assert parse_version("10.3.0.26") == (10, 3, 0, 26) and parse_version("11.1.0rc1") == (11, 1, 0)


def test_onnx_input_shapes(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["images", "w"], ["logits"])],
        "g",
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 8, 8]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]),
        ],  # an initializer listed as input
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [weight],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "model.onnx")
    )
    write_artifact_meta(
        tmp_path, ArtifactKind.ONNX, "model.onnx", inputs=[{"name": "images", "shape": [1, 3, 8, 8]}]
    )
    shapes = onnx_input_shapes(Artifact.open(tmp_path, "x"))
    assert shapes == [InputShape("images", (None, 3, 8, 8), (1, 3, 8, 8))]
