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
    np.testing.assert_allclose(output, expected, atol=1e-4)  # FP32 runs in fp32 on both (OpenVINO: f32)
    assert runner.timed_run({"images": x[:1]}) > 0
    assert info["float_precision"] == "fp32" and info["int8_mac_share"] == 0.0


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
