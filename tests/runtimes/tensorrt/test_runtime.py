"""The registered TensorRTRuntime: importing it never imports TensorRT, this host without TensorRT
says so, and on a GPU host FP32 and INT8 QDQ engines are built, opened and compared with ONNX
Runtime (marked `gpu`, skipped automatically where TensorRT or a GPU is missing)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.hashing import hash_tree
from optimize.registries import RUNTIMES
from optimize.runtimes.tensorrt import TensorRTRuntime
from optimize.runtimes.tensorrt.probe import detect_gpu, tensorrt_probe
from optimize.store import ArtifactStore
from optimize.targets import builtin_device_classes
from tests.runtimes.tensorrt.common import gpu_class, needs_tensorrt_gpu


def test_this_host_has_no_tensorrt():
    """On a host without TensorRT (this CI), every TensorRT class says so and nothing is built."""
    if tensorrt_probe()[0] is not None:
        pytest.skip("tensorrt is installed here")
    runtime = RUNTIMES.get("tensorrt")()
    assert runtime.version() == "not-installed"
    for device_class in builtin_device_classes().values():
        if device_class.runtime == "tensorrt":
            availability = runtime.availability(device_class)
            assert not availability.can_build and not availability.can_run
            assert availability.reason.startswith("tensorrt is not installed")


def test_importing_the_runtimes_does_not_import_tensorrt():
    import subprocess
    import sys

    code = "import sys; from optimize.registries import RUNTIMES; print('tensorrt' in RUNTIMES, 'tensorrt' in sys.modules)"
    assert subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split() == ["True", "False"]


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    from tests.assets.tiny_models import export_tiny_cnn

    folder = tmp_path_factory.mktemp("fp32")
    export_tiny_cnn(folder)
    write_artifact_meta(
        folder,
        ArtifactKind.ONNX,
        "model.onnx",
        precision="fp32",
        inputs=[{"name": "images", "shape": [1, 3, 8, 8]}],
        outputs=["logits"],
    )
    return Artifact.open(folder, hash_tree(folder))


@pytest.fixture(scope="module")
def qdq_model(fp32_model, tmp_path_factory):
    """Symmetric INT8 QDQ (what TensorRT wants), quantized by ONNX Runtime from the FP32 model.
    Biases stay float: TensorRT's parser rejects ONNX Runtime's INT32 bias DequantizeLinear."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.batches = iter(
                [{"images": rng.standard_normal((8, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
            )

        def get_next(self):
            return next(self.batches, None)

    folder = tmp_path_factory.mktemp("qdq")
    quantize_static(
        str(fp32_model.file),
        str(folder / "model.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    write_artifact_meta(
        folder,
        ArtifactKind.ONNX,
        "model.onnx",
        precision="int8",
        inputs=[{"name": "images", "shape": [1, 3, 8, 8]}],
        outputs=["logits"],
    )
    return Artifact.open(folder, hash_tree(folder))


def _onnxruntime_outputs(model: Artifact, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(model.file), providers=["CPUExecutionProvider"]).run(None, {"images": x})[
        0
    ]


def _build_and_open(model, device_class, store):
    runtime = TensorRTRuntime()
    assert runtime.availability(device_class).can_build
    workdir = store.new_workdir()
    info = runtime.build(model, device_class, workdir)
    engine = Artifact.open(workdir, hash_tree(workdir))
    return runtime, info, engine, runtime.open(engine, device_class)


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_fp32_engine_matches_onnxruntime(fp32_model, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts" / "store")
    device_class = gpu_class(tf32=False, workspace_mb=256)
    runtime, info, engine, runner = _build_and_open(fp32_model, device_class, store)
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    try:
        assert runner.input_names == ["images"]
        (output,) = runner.run({"images": x})
        np.testing.assert_allclose(output, _onnxruntime_outputs(fp32_model, x), atol=1e-3, rtol=1e-3)
        assert 0 < runner.timed_run({"images": x[:1]}) < 1000
        assert runner.device_memory_mb() > 0
        with pytest.raises(ValueError, match="engine accepts"):
            runner.run({"images": np.zeros((17, 3, 8, 8), np.float32)})
    finally:
        runner.close()
    assert engine.meta["kind"] == "engine" and engine.meta["runtime_version"] == runtime.version()
    assert engine.meta["device"]["gpu"] == detect_gpu()[0].name
    assert engine.meta["build_plan"]["profiles"][0]["max"] == [16, 3, 8, 8]
    cache = Path(info["timing_cache"]["path"])
    assert cache.is_file() and cache.parent == tmp_path / "artifacts" / "tensorrt-timing-cache"
    assert info["timing_cache"]["loaded"] is False
    again = runtime.build(fp32_model, device_class, store.new_workdir())
    assert again["timing_cache"]["loaded"] is True  # the second build of the class reuses the cache


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_qdq_int8_engine_matches_onnxruntime(qdq_model, tmp_path):
    store = ArtifactStore(tmp_path / "store")
    _, info, engine, runner = _build_and_open(qdq_model, gpu_class(), store)
    x = np.random.default_rng(2).standard_normal((8, 3, 8, 8)).astype(np.float32)
    try:
        (output,) = runner.run({"images": x})
    finally:
        runner.close()
    expected = _onnxruntime_outputs(qdq_model, x)
    assert np.abs(output - expected).max() <= 0.1 * np.abs(expected).max() + 1e-2
    assert engine.meta["precision"] == "int8" and "INT8" not in info["plan"]["builder_flags"]


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_identity_of_this_gpu_host():
    runtime = TensorRTRuntime()
    identity = runtime.device_identity(gpu_class())
    facts = detect_gpu()[0]
    assert identity["version"] == runtime.version() and identity["gpu"] == facts.name
    assert (
        identity["compute_capability"] == facts.compute_capability and identity["arch"] == platform.machine()
    )


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_outputs_by_name_in_types_numpy_lacks(tmp_path):
    """A strongly typed engine with a BF16 output (no NumPy type) and an INT64 one, recorded in the
    opposite order to the graph's: both come back by name, BF16 converted to float32."""
    import onnx
    from onnx import TensorProto, helper

    from optimize.runtimes.tensorrt.dtypes import TENSOR_TYPES

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["bf"], to=TensorProto.BFLOAT16),
            helper.make_node("Cast", ["images"], ["whole"], to=TensorProto.INT64),
        ],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("bf", TensorProto.BFLOAT16, ["batch", 4]),
            helper.make_tensor_value_info("whole", TensorProto.INT64, ["batch", 4]),
        ],
    )
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx")
    )
    write_artifact_meta(
        folder,
        ArtifactKind.ONNX,
        "model.onnx",
        precision="fp32",
        inputs=[{"name": "images", "shape": [1, 4]}],
        outputs=["whole", "bf"],
    )
    model = Artifact.open(folder, hash_tree(folder))
    _, _, _, runner = _build_and_open(model, gpu_class(), ArtifactStore(tmp_path / "store"))
    x = 10 * np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    try:
        whole, bf = runner.run({"images": x})
    finally:
        runner.close()
    assert whole.dtype == np.int64 and whole.tolist() == np.trunc(x).astype(np.int64).tolist()
    kind = TENSOR_TYPES["BF16"]
    np.testing.assert_array_equal(bf, kind.from_storage(kind.to_storage(x), x.shape))
