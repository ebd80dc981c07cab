"""The builder and runner adapters against the call-recording stand-in of `tensorrt` and
cuda-python (fake_tensorrt.py): apply_plan, build_engine, the timing cache round trip, DLA
placement, the shared logger, and the runner's allocation, data path and teardown, including a
failure mid-allocation freeing what was allocated. The `gpu` tests run the same paths on the
real library where one is installed."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from optimize.artifacts import Artifact, ArtifactKind
from optimize.runtimes.tensorrt import cuda as cuda_module
from optimize.runtimes.tensorrt import runner as runner_module
from optimize.runtimes.tensorrt.builder import apply_plan, build_engine
from optimize.runtimes.tensorrt.host import identity_from
from optimize.runtimes.tensorrt.logger import shared_logger
from optimize.runtimes.tensorrt.plan import PlanError
from optimize.runtimes.tensorrt.runner import TensorRTRunner
from tests.runtimes.tensorrt.common import ORIN, plan_for
from tests.runtimes.tensorrt.fake_tensorrt import DataType, EngineSpec, FakeCudart, IOSpec, make_tensorrt

STATIC = {"min": 4, "opt": 4, "max": 4}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """Conv -> Relu -> TopK: two layers a DLA runs and one it cannot."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], [0.5] * 6)
    k = helper.make_tensor("k", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"], name="conv1"),
            helper.make_node("Relu", ["c"], ["r"], name="relu1"),
            helper.make_node("TopK", ["r", "k"], ["v", "i"], name="topk", axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [weight, k],
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# -- apply_plan ------------------------------------------------------------------------------------
def _configured(trt, plan):
    builder = trt.Builder(shared_logger(trt))
    network = builder.create_network(0)
    network.inputs = ["images"]
    config = builder.create_builder_config()
    apply_plan(trt, builder, network, config, plan)
    return config


def test_apply_plan_sets_every_option_of_the_plan():
    trt = make_tensorrt("10.3.0")
    plan = plan_for(
        "10.3.0",
        precision="int8",
        strongly_typed=False,
        allow_fp16=True,
        workspace_mb=256,
        builder_optimization_level=5,
        tf32=False,
        sparse_weights=True,
        hardware_compatibility="ampere_plus",
        max_aux_streams=2,
        profiling_verbosity="detailed",
    )
    config = _configured(trt, plan)
    assert trt.record.args("BuilderConfig.set_flag") == [("FP16",), ("INT8",), ("SPARSE_WEIGHTS",)]
    assert trt.record.args("BuilderConfig.clear_flag") == [("TF32",)]
    assert trt.record.args("BuilderConfig.set_memory_pool_limit") == [("WORKSPACE", 256 * 2**20)]
    assert config.builder_optimization_level == 5 and config.max_aux_streams == 2
    assert config.hardware_compatibility_level == trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    assert config.default_device_type == trt.DeviceType.GPU
    assert trt.record.args("Profile.set_shape") == [("images", (1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8))]


def test_apply_plan_dla_and_what_a_version_lacks():
    trt = make_tensorrt("10.3.0", dla_cores=2)
    config = _configured(trt, plan_for("10.3.0", precision="int8", dla_core=1, batch=STATIC))
    assert config.default_device_type == trt.DeviceType.DLA and config.DLA_core == 1
    assert ("GPU_FALLBACK",) in trt.record.args("BuilderConfig.set_flag")
    assert trt.record.args("Profile.set_shape") == [
        (
            "images",
            (4, 3, 8, 8),
        )
        * 1
        + ((4, 3, 8, 8),) * 2
    ]
    with pytest.raises(PlanError, match="DLA core 1; TensorRT finds 0 DLA cores here"):
        _configured(make_tensorrt("10.3.0"), plan_for("10.3.0", precision="int8", dla_core=1, batch=STATIC))
    # a 10.x weak-typing plan on an 11.x module: the removed flag is named, not an AttributeError
    with pytest.raises(PlanError, match=r"TensorRT 11.1.0 has no BuilderFlag.FP16"):
        _configured(make_tensorrt("11.1.0"), plan_for("10.3.0", strongly_typed=False, allow_fp16=True))


# -- build_engine, the timing cache and the logger --------------------------------------------------
def test_build_engine_parses_configures_and_builds(onnx_file, tmp_path):
    trt = make_tensorrt("10.3.0")
    serialized, loaded, placement = build_engine(trt, onnx_file, plan_for("10.3.0"), "c", None)
    assert serialized == b"FAKEENGINE:gpu-0" and loaded is False and placement is None
    (flags,) = trt.record.args("Builder.create_network")
    assert flags == (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),)
    ((builder_logger,),), ((parser_logger,),) = trt.record.args("Builder"), trt.record.args("OnnxParser")
    assert builder_logger is parser_logger is shared_logger(trt)  # one logger for the process
    assert trt.record.args("Builder.build_serialized_network") == [(3,)]
    eleven = make_tensorrt("11.1.0")
    build_engine(eleven, onnx_file, plan_for("11.1.0"), "c", None)
    assert eleven.record.args("Builder.create_network") == [(0,)]


def test_timing_cache_round_trip(onnx_file, tmp_path, caplog):
    cache = tmp_path / "caches" / "c.timing-cache"
    trt = make_tensorrt("10.3.0")
    plan = plan_for("10.3.0")
    assert build_engine(trt, onnx_file, plan, "c", cache)[1] is False  # none yet: a fresh one
    first = json.loads(cache.read_bytes())
    assert first["tag"] == "gpu-0" and set(first["entries"]) == {"conv1", "relu1", "topk"}
    assert build_engine(trt, onnx_file, plan, "c", cache)[1] is True  # the second build loads it
    assert ("gpu-0", False) in trt.record.args("BuilderConfig.set_timing_cache")  # mismatches not ignored
    # a concurrent build wrote its own entries meanwhile: they are merged, not lost
    cache.write_bytes(json.dumps({"tag": "gpu-0", "entries": {"other": "gpu-0"}}).encode())
    build_engine(trt, onnx_file, plan, "c", cache)
    assert set(json.loads(cache.read_bytes())["entries"]) == {"conv1", "relu1", "topk", "other"}
    assert trt.record.args("TimingCache.combine")[-1] == (False,)
    # a cache from another device is refused and replaced; a damaged one too
    elsewhere = make_tensorrt("10.3.0", identity="gpu-1")
    with caplog.at_level(logging.WARNING):
        assert build_engine(elsewhere, onnx_file, plan, "c", cache)[1] is False
    assert "refused the timing cache" in caplog.text
    assert json.loads(cache.read_bytes())["tag"] == "gpu-1"
    cache.write_bytes(b"\x00garbage")
    assert build_engine(trt, onnx_file, plan, "c", cache)[1] is False
    assert json.loads(cache.read_bytes())["tag"] == "gpu-0"
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_build_quotes_what_tensorrt_said_in_this_build_only(onnx_file):
    trt = make_tensorrt("10.3.0", build_fails=True)
    earlier = shared_logger(trt)
    earlier.log(trt.ILogger.Severity.ERROR, "an error from an earlier call")
    with pytest.raises(PlanError) as failure:
        build_engine(trt, onnx_file, plan_for("10.3.0", workspace_mb=64), "orin", None)
    message = str(failure.value)
    assert message.startswith(
        "TensorRT could not build an engine for 'orin' (build_serialized_network returned None)"
    )
    assert "workspace 64 MiB" in message
    assert message.endswith("TensorRT said: Internal error: could not find any implementation for node conv1")
    assert "earlier call" not in message


def test_every_parser_error_is_reported(onnx_file):
    trt = make_tensorrt("10.3.0", unsupported_ops=frozenset({"Relu", "TopK"}))
    with pytest.raises(
        PlanError,
        match=r"with 2 errors: \[1\] node 1 'relu1' \(Relu\): UNSUPPORTED_NODE: .*\[2\] node 2 'topk'",
    ):
        build_engine(trt, onnx_file, plan_for("10.3.0"), "c", None)
    assert "Builder.build_serialized_network" not in trt.record.names()


def test_a_dla_build_records_where_each_layer_runs(onnx_file):
    report = (
        (3, "---------- Layers Running on DLA ----------"),
        (3, "[DlaLayer] {ForeignNode[conv1...relu1]}"),
        (3, "---------- Layers Running on GPU ----------"),
        (3, "[GpuLayer] TOPK: topk"),
    )
    layers = [
        {"Name": "{ForeignNode[conv1...relu1]}", "LayerType": "ForeignNode"},
        {"Name": "topk", "LayerType": "TopK"},
    ]
    spec = EngineSpec([], [], shapes=None, compute=None, layers=layers)
    trt = make_tensorrt("10.3.0", dla_cores=2, engine=spec, build_log=report)
    plan = plan_for("10.3.0", precision="int8", dla_core=0, batch=STATIC)
    _, _, placement = build_engine(trt, onnx_file, plan, "orin-dla", None)
    assert [(layer["name"], layer["device"]) for layer in placement["network"]] == [
        ("conv1", "DLA"),
        ("relu1", "DLA"),
        ("topk", "GPU"),
    ]
    assert [layer["device"] for layer in placement["engine"]] == ["DLA", "GPU"]
    assert placement["dla_layers"] == 2 and placement["dla_share"] == pytest.approx(2 / 3)
    (deserialized,) = trt.record.args("Runtime.deserialize_cuda_engine")
    assert deserialized[1] == 0  # inspected on the DLA core it was built for


def test_the_registered_runtime_puts_the_dla_placement_and_its_note_into_the_build(
    onnx_file, tmp_path, monkeypatch
):
    import optimize.runtimes.tensorrt as package
    from optimize.artifacts import write_artifact_meta
    from optimize.hashing import hash_tree
    from tests.runtimes.tensorrt.common import trt_class

    spec = EngineSpec([], [], shapes=None, compute=None, layers=[{"Name": "topk", "LayerType": "TopK"}])
    trt = make_tensorrt("10.3.0", dla_cores=1, engine=spec)
    monkeypatch.setattr(package, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(package, "tensorrt_probe", lambda: ("10.3.0", ""))
    monkeypatch.setattr(package, "detect_gpu", lambda: (ORIN, ""))
    monkeypatch.setattr(package, "l4t_release", lambda: "36.4.3")
    monkeypatch.setattr(package, "tensorrt_cuda_line", lambda: "system")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(onnx_file.read_bytes())
    write_artifact_meta(model_dir, ArtifactKind.ONNX, "model.onnx", precision="int8", outputs=["v"])
    model = Artifact.open(model_dir, hash_tree(model_dir))
    device_class = trt_class(batch=STATIC, name="orin-dla", dla_core=0, timing_cache=False)
    (tmp_path / "work").mkdir()
    info = package.TensorRTRuntime().build(model, device_class, tmp_path / "work")
    assert info["dla_share"] == 0 and info["dla_placement"]["gpu_layers"] == 3
    assert info["notes"] == [
        "DLA: only 0 of 3 layers run on the DLA; the rest fell back to the GPU (e.g. conv1, relu1, topk), "
        "so its numbers mostly measure the GPU"
    ]
    assert json.loads((tmp_path / "work" / "artifact.json").read_text())["build_plan"]["profiles"][0][
        "max"
    ] == [4, 3, 8, 8]


# -- the runner ------------------------------------------------------------------------------------
def _engine_spec():
    """Input 'x' (dynamic batch, FLOAT) and a shape tensor 'repeat' (host, INT32); outputs in
    engine order 'bf' (BF16: x*2 repeated) then 'total' (FLOAT: the sum per sample)."""

    def shapes(input_shapes, values):
        batch = input_shapes["x"][0]
        repeat = int(values["repeat"][0]) if "repeat" in values else 1
        return {"bf": (batch, 4 * repeat), "total": (batch,)}

    def compute(arrays):
        x, repeat = arrays["x"], int(arrays["repeat"][0])
        return {"bf": np.tile(x * 2, (1, repeat)), "total": x.sum(axis=1)}

    return EngineSpec(
        inputs=[
            IOSpec("x", DataType.FLOAT, (-1, 4), ((1, 4), (2, 4), (8, 4))),
            IOSpec("repeat", DataType.INT32, (1,), ((1,), (1,), (3,)), on_host=True),
        ],
        outputs=[IOSpec("bf", DataType.BF16, (-1, -1)), IOSpec("total", DataType.FLOAT, (-1,))],
        shapes=shapes,
        compute=compute,
    )


HERE = identity_from("10.3.0", "system", ORIN, "36.4.3", "aarch64")


def _engine(tmp_path, device=HERE, outputs=("total", "bf")):
    (tmp_path / "model.engine").write_bytes(b"FAKEENGINE:gpu-0")
    meta = {"file": "model.engine", "device": device, "build_plan": {}, "outputs": list(outputs)}
    return Artifact(ArtifactKind.ENGINE, "", tmp_path, meta)


@pytest.fixture
def standins(monkeypatch):
    def install(fail_on=None, engine=None, execute_fails=False):
        trt = make_tensorrt("10.3.0", engine=engine or _engine_spec(), execute_fails=execute_fails)
        cudart = FakeCudart(fail_on)
        trt.attach(cudart)
        monkeypatch.setattr(runner_module, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(cuda_module, "load_cudart", lambda: cudart)
        return trt, cudart

    return install


def test_runner_allocates_runs_by_name_and_frees_everything(standins, tmp_path):
    trt, cudart = standins()
    runner = TensorRTRunner(_engine(tmp_path), "orin", HERE)
    assert runner.input_names == ["x", "repeat"] and runner.output_names == ["total", "bf"]
    # buffers for the profile's largest shapes: x 8x4 float, bf 8x12 bf16, total 8 float; the shape
    # tensor lives in pinned host memory only, and its address is a host pointer
    assert sorted(size for (size,) in cudart.record.args("cudaMalloc")) == [8 * 4, 8 * 4 * 4, 8 * 12 * 2]
    assert cudart.live() == {"device": 3, "pinned": 4, "streams": 1, "events": 2}
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    total, bf = runner.run({"x": x, "repeat": np.array([2], np.int32)})  # by name, not engine order
    np.testing.assert_array_equal(total, x.sum(axis=1))
    assert bf.dtype == np.float32 and bf.shape == (3, 8)
    np.testing.assert_array_equal(bf, np.tile(x * 2, (1, 2)))  # BF16 decoded to float32
    assert runner.timed_run({"x": x, "repeat": np.array([1], np.int32)}) == 0.25
    with pytest.raises(
        ValueError, match=r"input 'repeat' has values \[4\]; the engine accepts \[1\] to \[3\]"
    ):
        runner.run({"x": x, "repeat": np.array([4], np.int32)})
    with pytest.raises(ValueError, match=r"input 'x' has shape \[9, 4\]"):
        runner.run({"x": np.zeros((9, 4), np.float32), "repeat": np.array([1], np.int32)})
    runner.close()
    runner.close()  # twice is harmless
    assert cudart.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0}


@pytest.mark.parametrize(
    "fail_on",
    [{"cudaMalloc": 3}, {"cudaMallocHost": 2}, {"cudaEventCreate": 2}],
    ids=["second-buffer", "pinned-buffer", "event"],
)
def test_a_failure_mid_start_up_frees_what_was_allocated(standins, tmp_path, fail_on):
    _, cudart = standins(fail_on=fail_on)
    with pytest.raises(RuntimeError, match=f"CUDA {next(iter(fail_on))} failed: cudaErrorMemoryAllocation"):
        TensorRTRunner(_engine(tmp_path), "orin", HERE)
    assert cudart.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0}


def test_an_engine_from_another_device_is_refused_before_any_allocation(standins, tmp_path):
    trt, cudart = standins()
    nano = {**HERE, "sm_count": 8}
    with pytest.raises(
        RuntimeError, match=r"engine of 'orin': .*differs: sm_count 16 vs 8\): rebuild it on this host"
    ):
        TensorRTRunner(_engine(tmp_path, device=HERE), "orin", nano)
    assert cudart.record.calls == [] and "Runtime.deserialize_cuda_engine" not in trt.record.names()


def test_an_engine_tensorrt_refuses_is_explained_and_nothing_leaks(standins, tmp_path):
    _, cudart = standins()
    engine = _engine(tmp_path)
    (tmp_path / "model.engine").write_bytes(b"FAKEENGINE:gpu-7")
    with pytest.raises(
        RuntimeError,
        match="same identity: the engine file may be damaged.*TensorRT said: IRuntime::deserializeCudaEngine",
    ):
        TensorRTRunner(engine, "orin", HERE)
    assert cudart.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0}


def test_outputs_the_metadata_names_must_exist(standins, tmp_path):
    standins()
    with pytest.raises(
        RuntimeError, match=r"the engine has no output \['logits'\]; its outputs are \['bf', 'total'\]"
    ):
        TensorRTRunner(_engine(tmp_path, outputs=("logits",)), "orin", HERE)


def test_a_failed_execution_quotes_tensorrt(standins, tmp_path):
    _, cudart = standins(execute_fails=True)
    runner = TensorRTRunner(_engine(tmp_path), "orin", HERE)
    with pytest.raises(
        RuntimeError, match=r"execute_async_v3 failed; TensorRT said: .*enqueueV3: Error Code 1"
    ):
        runner.run({"x": np.zeros((2, 4), np.float32), "repeat": np.array([1], np.int32)})
    runner.close()
    assert cudart.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0}
