"""TensorRT runtime: the translation from a device class to builder settings, cache keys,
availability and messages are tested here without TensorRT; the engine build and the runner need
TensorRT and an NVIDIA GPU and are marked `gpu` (skipped automatically where either is missing)."""

from __future__ import annotations

import dataclasses
import itertools
import platform
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.errors import TargetError
from optimize.hashing import hash_tree
from optimize.keys import engine_build_settings, engine_key
from optimize.registries import RUNTIMES
from optimize.runtimes.tensorrt import (
    IDENTITY_FIELDS,
    TIMING_CACHE_ENV,
    TIMING_CACHE_FIELDS,
    CudaRuntime,
    GpuFacts,
    InputShape,
    PlanError,
    TensorRTRuntime,
    TensorRTSettings,
    availability_for,
    batch_chunks,
    cuda_version_text,
    describe_plan,
    detect_gpu,
    device_memory_mb,
    engine_mismatch_message,
    format_parser_errors,
    hardware_mismatch,
    identity_from,
    make_build_plan,
    no_gpu_reason,
    onnx_input_shapes,
    optimization_profile,
    parse_driver_version,
    parse_tegra_release,
    parse_version,
    shape_problem,
    tensorrt_probe,
    timing_cache_dir,
    timing_cache_name,
)
from optimize.store import ArtifactStore
from optimize.targets import builtin_device_classes
from optimize.targets.device_class import DeviceClass

ADAPTER = TypeAdapter(DeviceClass)

A100 = GpuFacts("NVIDIA A100-SXM4-40GB", "8.0", 108, False, 40536, "12.6", "12.8", "570.86.15")
T4 = GpuFacts("Tesla T4", "7.5", 40, False, 15360, "12.6", "12.8", "570.86.15")
ORIN = GpuFacts("Orin", "8.7", 16, True, 62841, "12.6", "12.6", "540.4.0")
IMAGES = [InputShape("images", (None, 3, 8, 8), (1, 3, 8, 8))]
IDENTITY = identity_from("10.3.0", "cu12", A100, None, "x86_64")


def trt_class(batch=None, arch="any", runtime_version=None, name="test-tensorrt", **settings):
    return ADAPTER.validate_python(
        {
            "name": name,
            "runtime": "tensorrt",
            "arch": arch,
            "runtime_version": runtime_version,
            "batch": batch or {"min": 1, "opt": 4, "max": 16},
            "settings": settings,
        }
    )


def plan_for(version="10.3.0", inputs=IMAGES, precision="fp32", **settings):
    return make_build_plan(trt_class(**settings), version, inputs, IDENTITY, precision)


# -- settings ---------------------------------------------------------------------------------
def test_builtin_classes_parse_with_their_settings():
    classes = builtin_device_classes()
    orin = classes["jetson-orin-tensorrt"]
    assert orin.runtime == "tensorrt" and orin.arch == "aarch64" and orin.runtime_version == "10.*"
    assert (
        orin.settings.workspace_mb == 2048 and orin.settings.dla_core is None and orin.settings.gpu_fallback
    )
    assert orin.settings.compute_capability == "8.7" and orin.settings.integrated_gpu is True
    assert classes["jetson-orin-nano-tensorrt"].settings.workspace_mb == 512
    assert classes["t4-tensorrt"].settings.compute_capability == "7.5"
    assert classes["ampere-plus-tensorrt"].settings.hardware_compatibility == "ampere_plus"


def test_settings_reject_unknown_keys_and_weak_typing_mixups():
    with pytest.raises(ValidationError, match="workspace_mb"):
        TensorRTSettings.model_validate({"workspace": 10})
    with pytest.raises(ValidationError, match="allow_fp16 needs strongly_typed: false"):
        TensorRTSettings(allow_fp16=True)
    assert TensorRTSettings(allow_fp16=True, strongly_typed=False).allow_fp16
    with pytest.raises(ValidationError, match="builder_optimization_level"):
        TensorRTSettings(builder_optimization_level=6)
    with pytest.raises(ValidationError, match="compute_capability"):
        TensorRTSettings(compute_capability="sm_87")


@pytest.mark.parametrize(
    "ranges, message",
    [
        ({"ids:0": (1, 2, 3)}, "axis ≥ 1"),
        ({"ids": (1, 2, 3)}, "input:axis"),
        ({"ids:1": (8, 4, 16)}, "min ≤ opt ≤ max"),
    ],
)
def test_shape_ranges_are_checked(ranges, message):
    with pytest.raises(ValidationError, match=message):
        TensorRTSettings(shape_ranges=ranges)


# -- the build plan: 10.x and 11.x ----------------------------------------------------------------
@pytest.mark.parametrize(
    "version, flags, line",
    [
        ("10.0.1", ("STRONGLY_TYPED",), 10),
        ("10.3.0", ("STRONGLY_TYPED",), 10),
        ("11.0.0", (), 11),
        ("11.1.0.9", (), 11),
    ],
)
def test_default_plan_is_strongly_typed_on_both_lines(version, flags, line):
    plan = plan_for(version)
    assert plan.network_flags == flags and plan.strongly_typed and plan.api_line == line
    assert plan.builder_flags == () and plan.cleared_builder_flags == () and plan.memory_pool_limits == {}
    assert plan.builder_optimization_level == 3 and plan.hardware_compatibility_level == "NONE"
    assert (
        plan.default_device_type == "GPU"
        and plan.dla_core is None
        and plan.profiling_verbosity == "LAYER_NAMES_ONLY"
    )
    assert plan.timing_cache_file == timing_cache_name("test-tensorrt", IDENTITY)


SETTING_VARIANTS = [
    {},
    {"strongly_typed": False},
    {"strongly_typed": False, "allow_fp16": True},
    {"tf32": False},
    {"dla_core": 0},
    {"version_compatible": True},
    {"sparse_weights": True},
    {"hardware_compatibility": "ampere_plus"},
]


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_no_calibration_or_removed_flags_on_any_line(version, precision):
    """No plan ever asks for EXPLICIT_BATCH, and none on 11.x for the removed precision flags."""
    for settings in SETTING_VARIANTS:
        try:
            plan = plan_for(version, precision=precision, **settings)
        except PlanError:
            continue
        assert "EXPLICIT_BATCH" not in plan.network_flags
        if version.startswith("11"):
            assert plan.network_flags == () and plan.strongly_typed
            assert not {"FP16", "INT8", "BF16", "FP8", "INT4", "OBEY_PRECISION_CONSTRAINTS"} & set(
                plan.builder_flags
            )


def test_weak_typing_is_a_10x_option_only():
    plan = plan_for("10.3.0", precision="int8", strongly_typed=False, allow_fp16=True)
    assert plan.network_flags == () and not plan.strongly_typed
    assert plan.builder_flags == (
        "FP16",
        "INT8",
    )  # INT8: explicit quantization of the QDQ nodes, no calibrator
    assert plan_for("10.3.0", precision="fp32", strongly_typed=False).builder_flags == ()
    with pytest.raises(PlanError, match="impossible on TensorRT 11.x"):
        plan_for("11.1.0", strongly_typed=False)
    with pytest.raises(PlanError, match="INT4 model needs a strongly typed"):
        plan_for("10.3.0", precision="int4", strongly_typed=False)
    assert plan_for("11.1.0", precision="int4").builder_flags == ()


def test_memory_level_tf32_sparsity_streams_and_verbosity():
    plan = plan_for(
        workspace_mb=2048,
        builder_optimization_level=5,
        tf32=False,
        sparse_weights=True,
        max_aux_streams=0,
        profiling_verbosity="detailed",
    )
    assert plan.memory_pool_limits == {"WORKSPACE": 2048 * 2**20}
    assert plan.builder_optimization_level == 5 and plan.cleared_builder_flags == ("TF32",)
    assert plan.builder_flags == ("SPARSE_WEIGHTS",) and plan.max_aux_streams == 0
    assert plan.profiling_verbosity == "DETAILED"
    assert "does not use the timing cache" in " ".join(plan_for(builder_optimization_level=0).notes)
    assert plan_for(timing_cache=False).timing_cache_file is None


@pytest.mark.parametrize("version", ["10.0.1", "10.9.0", "11.1.0"])
def test_compatibility_modes(version):
    plan = plan_for(version, hardware_compatibility="ampere_plus", version_compatible=True)
    assert plan.hardware_compatibility_level == "AMPERE_PLUS"
    assert "VERSION_COMPATIBLE" in plan.builder_flags and plan.version_compatible
    if parse_version(version) >= (10, 9):
        assert (
            plan_for(version, hardware_compatibility="same_compute_capability").hardware_compatibility_level
            == "SAME_COMPUTE_CAPABILITY"
        )
    else:
        with pytest.raises(PlanError, match="needs TensorRT ≥ 10.9"):
            plan_for(version, hardware_compatibility="same_compute_capability")


def test_dla_with_and_without_gpu_fallback():
    plan = plan_for("10.3.0", precision="int8", dla_core=1)
    assert (
        plan.default_device_type == "DLA" and plan.dla_core == 1 and plan.builder_flags == ("GPU_FALLBACK",)
    )
    assert plan.notes == ()
    strict = plan_for("10.3.0", precision="fp16", dla_core=0, gpu_fallback=False)
    assert strict.default_device_type == "DLA" and strict.builder_flags == ()
    # the classic JetPack 6 flow: an FP32 model, weak typing, FP16 kernels on the DLA
    classic = plan_for("10.3.0", precision="fp32", dla_core=0, strongly_typed=False, allow_fp16=True)
    assert classic.builder_flags == ("FP16", "GPU_FALLBACK") and classic.notes == ()


def test_dla_precision_and_version_limits():
    fp32 = plan_for("10.3.0", precision="fp32", dla_core=0)
    assert any("will run on the GPU" in note for note in fp32.notes)
    with pytest.raises(PlanError, match="DLA runs FP16 and INT8 layers only"):
        plan_for("10.3.0", precision="fp32", dla_core=0, gpu_fallback=False)
    for version in ("11.0.0", "11.3.1"):
        with pytest.raises(PlanError, match="no DLA support"):
            plan_for(version, precision="int8", dla_core=0)
    with pytest.raises(PlanError, match="Windows on ARM"):
        plan_for("11.4.0", precision="int8", dla_core=0)
    assert plan_for("11.4.1", precision="int8", dla_core=0).default_device_type == "DLA"
    assert any("10.7" in note for note in plan_for("10.8.0", precision="int8", dla_core=0).notes)


def test_unsupported_and_future_versions():
    with pytest.raises(PlanError, match="older than the 10.x API"):
        plan_for("8.6.1")
    future = plan_for("12.0.0")
    assert (
        future.api_line == 11 and future.network_flags == () and "newer than the 11.x API" in future.notes[0]
    )


def test_builtin_classes_translate():
    classes = builtin_device_classes()
    orin = make_build_plan(classes["jetson-orin-tensorrt"], "10.3.0", IMAGES, IDENTITY, "int8")
    assert orin.network_flags == ("STRONGLY_TYPED",) and orin.memory_pool_limits == {
        "WORKSPACE": 2048 * 2**20
    }
    assert (
        orin.profiles[0].min == (1, 3, 8, 8)
        and orin.profiles[0].opt == (8, 3, 8, 8)
        and orin.profiles[0].max == (32, 3, 8, 8)
    )
    portable = make_build_plan(classes["ampere-plus-tensorrt"], "11.1.0", IMAGES, IDENTITY, "fp16")
    assert portable.network_flags == () and portable.hardware_compatibility_level == "AMPERE_PLUS"
    assert "fixed to" not in describe_plan(portable) and "AMPERE_PLUS" in describe_plan(portable)


# -- optimisation profiles ----------------------------------------------------------------------
BATCH = trt_class(batch={"min": 2, "opt": 8, "max": 64}).batch


def test_profile_from_the_batch_profile():
    profiles, notes = optimization_profile(IMAGES, BATCH, {})
    (profile,) = profiles
    assert (profile.name, profile.min, profile.opt, profile.max) == (
        "images",
        (2, 3, 8, 8),
        (8, 3, 8, 8),
        (64, 3, 8, 8),
    )
    assert notes == []


def test_static_inputs_need_no_profile():
    profiles, notes = optimization_profile([InputShape("x", (1, 3, 8, 8))], BATCH, {})
    assert profiles == () and "fixed batch of 1" in notes[0]
    mixed, _ = optimization_profile([InputShape("scale", (1,)), InputShape("x", (None, 4))], BATCH, {})
    assert [p.name for p in mixed] == ["x"]


def test_dynamic_non_batch_axes():
    text = [InputShape("ids", (None, None), (1, 128)), InputShape("mask", (None, None), (1, 128))]
    profiles, notes = optimization_profile(text, BATCH, {"ids:1": (16, 128, 512), "other:1": (1, 1, 1)})
    ids, mask = profiles
    assert ids.min == (2, 16) and ids.opt == (8, 128) and ids.max == (64, 512)
    assert (mask.min, mask.opt, mask.max) == ((2, 128), (8, 128), (64, 128))
    assert any("'mask' axis 1 is dynamic and fixed to 128" in n for n in notes)
    assert any("'other:1'] matches no dynamic axis" in n for n in notes)
    with pytest.raises(PlanError, match=r"shape_ranges\['ids:1'\]"):
        optimization_profile([InputShape("ids", (None, None))], BATCH, {})


# -- identity and cache keys -----------------------------------------------------------------------
BASE_CLASS = trt_class(workspace_mb=1024)


def _engine_key(device_class=BASE_CLASS, identity=IDENTITY):
    return engine_key("model-hash", engine_build_settings(device_class), identity, "code")


@pytest.mark.parametrize("field", IDENTITY_FIELDS)
def test_engine_key_changes_with_every_identity_field(field):
    changed = {**IDENTITY, field: f"{IDENTITY[field]}-other"}
    assert _engine_key(identity=changed) != _engine_key()


@pytest.mark.parametrize(
    "change",
    [
        {"workspace_mb": 2048},
        {"builder_optimization_level": 4},
        {"dla_core": 0},
        {"gpu_fallback": False},
        {"hardware_compatibility": "ampere_plus"},
        {"version_compatible": True},
        {"timing_cache": False},
        {"strongly_typed": False},
        {"tf32": False},
        {"sparse_weights": True},
        {"max_aux_streams": 1},
        {"profiling_verbosity": "detailed"},
        {"shape_ranges": {"ids:1": (1, 2, 3)}},
    ],
)
def test_engine_key_changes_with_every_builder_setting(change):
    assert _engine_key(trt_class(**{"workspace_mb": 1024, **change})) != _engine_key()


def test_engine_key_changes_with_batch_profile_and_version_line():
    assert _engine_key(trt_class(batch={"min": 1, "opt": 8, "max": 16}, workspace_mb=1024)) != _engine_key()
    assert _engine_key(trt_class(runtime_version="10.*", workspace_mb=1024)) != _engine_key()


def test_engine_key_ignores_what_does_not_change_the_engine():
    relabelled = BASE_CLASS.model_copy(
        update={
            "name": "renamed",
            "description": "words",
            "memory_budget_mb": 512,
            "accepted_precisions": ["int8"],
        }
    )
    assert _engine_key(relabelled) == _engine_key()
    bigger = dataclasses.replace(A100, total_memory_mb=81920)  # same GPU model, other memory size
    assert identity_from("10.3.0", "cu12", bigger, None, "x86_64") == IDENTITY


def test_identity_fields():
    orin = identity_from("10.3.0", "system", ORIN, "36.4.3", "aarch64")
    assert orin == {
        "runtime": "tensorrt",
        "version": "10.3.0",
        "tensorrt_cuda": "system",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "sm_count": 16,
        "cuda_runtime": "12.6",
        "cuda_driver": "12.6",
        "driver": "540.4.0",
        "l4t": "36.4.3",
        "arch": "aarch64",
    }
    assert set(IDENTITY_FIELDS) <= set(orin)


@pytest.mark.parametrize("field", TIMING_CACHE_FIELDS)
def test_timing_cache_is_per_class_device_cuda_and_version(field):
    assert timing_cache_name("a", {**IDENTITY, field: "other"}) != timing_cache_name("a", IDENTITY)


def test_timing_cache_name_ignores_driver_and_settings():
    name = timing_cache_name("t4-tensorrt", IDENTITY)
    assert name.startswith("t4-tensorrt-") and name.endswith(".timing-cache")
    assert timing_cache_name("t4-tensorrt", {**IDENTITY, "driver": "999.1", "l4t": "36.4.3"}) == name
    assert timing_cache_name("other-class", IDENTITY) != name
    assert plan_for(workspace_mb=64).timing_cache_file == plan_for(workspace_mb=4096).timing_cache_file


def test_timing_cache_location(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts" / "store")
    assert timing_cache_dir(store.new_workdir(), {}) == tmp_path / "artifacts" / "tensorrt-timing-cache"
    assert (
        timing_cache_dir(tmp_path / "loose", {TIMING_CACHE_ENV: str(tmp_path / "mine")}) == tmp_path / "mine"
    )
    assert (
        timing_cache_dir(tmp_path / "loose", {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        == tmp_path / "xdg" / "optimize" / "tensorrt-timing-cache"
    )


# -- availability -----------------------------------------------------------------------------------
def _available(device_class, facts, trt="10.3.0", host="x86_64"):
    return availability_for(
        device_class, trt, "", facts, "" if facts else "no CUDA GPU is visible (test)", host
    )


def test_availability_reasons():
    classes = builtin_device_classes()
    missing = availability_for(
        classes["t4-tensorrt"], None, "tensorrt is not installed (x)", None, "", "x86_64"
    )
    assert (missing.can_build, missing.can_run, missing.reason) == (
        False,
        False,
        "tensorrt is not installed (x)",
    )
    assert (
        "the class needs 10.*"
        in _available(classes["jetson-orin-tensorrt"], ORIN, trt="11.1.0", host="aarch64").reason
    )
    assert _available(classes["t4-tensorrt"], None).reason == "no CUDA GPU is visible (test)"
    assert (
        "runs on aarch64 hosts; this host is x86_64"
        in _available(classes["jetson-orin-tensorrt"], A100).reason
    )
    assert (
        "compute capability 8.7 (sm_87)"
        in _available(classes["jetson-orin-tensorrt"], A100, host="aarch64").reason
    )
    assert (
        "compute capability 7.5 (sm_75); this host has NVIDIA A100"
        in _available(classes["t4-tensorrt"], A100).reason
    )
    assert "≥ 8.0" in _available(classes["ampere-plus-tensorrt"], T4).reason
    assert "integrated (Jetson)" in _available(trt_class(integrated_gpu=True), A100).reason
    assert "needs a discrete GPU" in _available(trt_class(integrated_gpu=False), ORIN, host="aarch64").reason


def test_hardware_checks_without_a_class_requirement():
    assert "Ampere or newer" in hardware_mismatch(
        trt_class(hardware_compatibility="ampere_plus"), T4, "x86_64"
    )
    assert "Turing or newer" in hardware_mismatch(
        trt_class(hardware_compatibility="same_compute_capability"),
        dataclasses.replace(T4, compute_capability="7.0"),
        "x86_64",
    )
    assert "a DLA exists only next to Jetson Orin" in hardware_mismatch(trt_class(dla_core=0), A100, "x86_64")
    assert hardware_mismatch(trt_class(dla_core=0), ORIN, "aarch64") is None


@pytest.mark.parametrize(
    "name, facts, host, version",
    [
        ("t4-tensorrt", T4, "x86_64", "10.7.0"),
        ("jetson-orin-tensorrt", ORIN, "aarch64", "10.3.0"),
        ("jetson-orin-nano-tensorrt", dataclasses.replace(ORIN, sm_count=8), "aarch64", "10.3.0"),
        ("ampere-plus-tensorrt", A100, "x86_64", "11.1.0"),
        ("ampere-plus-tensorrt", ORIN, "aarch64", "10.3.0"),
    ],
)
def test_classes_available_on_their_devices(name, facts, host, version):
    availability = _available(builtin_device_classes()[name], facts, trt=version, host=host)
    assert availability.can_build and availability.can_run and availability.reason == ""


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


def test_engine_mismatch_message_names_both_identities():
    here = identity_from("10.7.0", "cu12", T4, None, "x86_64")
    message = engine_mismatch_message(
        "jetson-orin-tensorrt",
        identity_from("10.3.0", "system", ORIN, "36.4.3", "aarch64"),
        here,
        ["IRuntime::deserializeCudaEngine: version tag mismatch"],
    )
    assert "built with TensorRT 10.3.0 on Orin (compute capability 8.7, 16 SMs, aarch64)" in message
    assert "this host has TensorRT 10.7.0 on Tesla T4 (compute capability 7.5, 40 SMs, x86_64)" in message
    assert "version '10.3.0' vs '10.7.0'" in message and "gpu 'Orin' vs 'Tesla T4'" in message
    assert "rebuild it on a 'jetson-orin-tensorrt' host" in message and "version tag mismatch" in message
    assert "may be damaged" in engine_mismatch_message("c", here, here)


def test_describe_plan_says_what_was_tried():
    text = describe_plan(plan_for("10.3.0", precision="int8", workspace_mb=512, dla_core=0))
    assert text.startswith(
        "TensorRT 10.3.0 (10.x API), strongly typed, flags GPU_FALLBACK, workspace 512 MiB"
    )
    assert (
        "DLA core 0 with GPU fallback" in text
        and "profile images [1, 3, 8, 8]/[4, 3, 8, 8]/[16, 3, 8, 8]" in text
    )


def test_runner_arithmetic():
    assert batch_chunks(8, 2) == [(0, 2), (2, 4), (4, 6), (6, 8)] and batch_chunks(1, 1) == [(0, 1)]
    with pytest.raises(ValueError, match="fixed batch of 4"):
        batch_chunks(6, 4)
    assert shape_problem("x", (4, 3), (1, 3), (8, 3)) is None
    assert "engine accepts [1, 3] to [8, 3]" in shape_problem("x", (9, 3), (1, 3), (8, 3))
    assert shape_problem("x", (4, 3, 1), (1, 3), (8, 3)) is not None
    assert device_memory_mb(64 * 2**20, 2**20, 2**20) == 64
    assert (
        device_memory_mb(-5 * 2**20, 2 * 2**20, 2**20) == 3
    )  # free memory rose meanwhile: count what we know


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


def test_importing_the_runtimes_does_not_import_tensorrt():
    import subprocess
    import sys

    code = "import sys; from optimize.registries import RUNTIMES; print('tensorrt' in RUNTIMES, 'tensorrt' in sys.modules)"
    assert subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split() == ["True", "False"]


# -- on a GPU host with TensorRT ------------------------------------------------------------------
def _why_no_tensorrt_gpu() -> str:
    version, problem = tensorrt_probe()
    if version is None:
        return problem
    facts, problem = detect_gpu()
    return "" if facts is not None else problem


def _why_no_cuda_torch() -> str:
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    return detect_gpu()[1]


needs_tensorrt_gpu = pytest.mark.skipif(
    bool(_why_no_tensorrt_gpu()), reason=_why_no_tensorrt_gpu() or "ready"
)
needs_cuda_torch = pytest.mark.skipif(bool(_why_no_cuda_torch()), reason=_why_no_cuda_torch() or "ready")


def gpu_class(**settings):
    return trt_class(batch={"min": 1, "opt": 4, "max": 16}, name="gpu-test-tensorrt", **settings)


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


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_an_engine_from_elsewhere_is_refused_with_a_rebuild_hint(tmp_path):
    elsewhere = identity_from("10.3.0", "system", ORIN, "36.4.3", "aarch64")
    (tmp_path / "model.engine").write_bytes(b"not an engine for this host" * 64)
    write_artifact_meta(
        tmp_path, ArtifactKind.ENGINE, "model.engine", runtime="tensorrt", device=elsewhere, build_plan={}
    )
    with pytest.raises(RuntimeError, match="rebuild it on a 'jetson-orin-tensorrt' host"):
        TensorRTRuntime().open(Artifact.open(tmp_path, "x"), builtin_device_classes()["jetson-orin-tensorrt"])


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
@needs_cuda_torch
def test_cuda_event_timing_and_memory_through_pytorch():
    """The runner's CUDA layer (cuda-python) checked against PyTorch's own CUDA events and
    memory accounting, on the same stream and device; needs a GPU but no TensorRT."""
    import torch

    cuda = CudaRuntime()
    cuda.init_context()
    stream = cuda.stream()
    start, end = cuda.event(), cuda.event()
    torch_start, torch_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a = torch.randn(2048, 2048, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(torch.cuda.ExternalStream(int(stream))):
        cuda.record(start, stream)
        torch_start.record()
        for _ in range(20):
            a = torch.tanh(a @ a)
        torch_end.record()
        cuda.record(end, stream)
    ours = cuda.elapsed_ms(start, end)
    torch_end.synchronize()
    theirs = torch_start.elapsed_time(torch_end)
    assert ours > 0 and theirs <= ours <= theirs * 1.1 + 0.2

    size = 256 * 2**20
    free_before, torch_free_before = cuda.free_bytes(), torch.cuda.mem_get_info()[0]
    pointer = cuda.malloc(size)
    ours_drop, torch_drop = free_before - cuda.free_bytes(), torch_free_before - torch.cuda.mem_get_info()[0]
    assert ours_drop >= size * 0.9 and abs(ours_drop - torch_drop) < 64 * 2**20
    assert device_memory_mb(ours_drop, 0, size) >= size / 2**20

    host_pointer, host = cuda.pinned(4096)
    values = np.arange(1024, dtype=np.float32)
    host.view(np.float32)[:] = values
    cuda.copy_to_device(pointer, host_pointer, 4096, stream)
    host[:] = 0
    cuda.copy_to_host(host_pointer, pointer, 4096, stream)
    cuda.synchronize(stream)
    np.testing.assert_array_equal(host.view(np.float32), values)
    cuda.free(pointer)
    cuda.free_pinned(host_pointer)

    before = torch.cuda.memory_allocated()
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    assert device_memory_mb(torch.cuda.memory_allocated() - before, 0, 0) == 64
    del block


def test_setting_combinations_never_crash_the_planner():
    """Every combination of the switches gives a plan or a PlanError, never another exception."""
    switches = {
        "strongly_typed": [True, False],
        "allow_fp16": [False, True],
        "dla_core": [None, 0],
        "gpu_fallback": [True, False],
        "hardware_compatibility": ["none", "same_compute_capability"],
    }
    for values in itertools.product(*switches.values()):
        settings = dict(zip(switches, values, strict=True))
        if settings["allow_fp16"] and settings["strongly_typed"]:
            continue  # rejected by the settings model itself
        for version in ("10.0.1", "10.3.0", "10.9.0", "11.1.0", "11.4.1"):
            for precision in ("fp32", "fp16", "int8", "int4"):
                try:
                    plan = plan_for(version, precision=precision, **settings)
                except PlanError:
                    continue
                assert plan.to_dict()["tensorrt_version"] == version
