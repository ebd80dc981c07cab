"""The pure translation from a device class to a BuildPlan on both API lines (10.x, 11.x):
flags, DLA, compatibility modes, optimisation profiles and the one-line description; no TensorRT."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from optimize.runtimes.tensorrt.host import parse_version, timing_cache_name
from optimize.runtimes.tensorrt.plan import (
    InputShape,
    PlanError,
    describe_plan,
    make_build_plan,
    optimization_profile,
)
from optimize.targets import builtin_device_classes
from tests.runtimes.tensorrt.common import IDENTITY, IMAGES, plan_for, trt_class


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


STATIC = {"min": 4, "opt": 4, "max": 4}  # what a DLA class's batch must be
DETAILED_NOTE = "profiling_verbosity raised to detailed: the build records which layers run on the DLA"


def test_dla_with_and_without_gpu_fallback():
    plan = plan_for("10.3.0", precision="int8", dla_core=1, batch=STATIC)
    assert (
        plan.default_device_type == "DLA" and plan.dla_core == 1 and plan.builder_flags == ("GPU_FALLBACK",)
    )
    assert plan.notes == (DETAILED_NOTE,) and plan.profiling_verbosity == "DETAILED"
    strict = plan_for("10.3.0", precision="fp16", dla_core=0, gpu_fallback=False, batch=STATIC)
    assert strict.default_device_type == "DLA" and strict.builder_flags == ()
    # the classic JetPack 6 flow: an FP32 model, weak typing, FP16 kernels on the DLA
    classic = plan_for(
        "10.3.0", precision="fp32", dla_core=0, strongly_typed=False, allow_fp16=True, batch=STATIC
    )
    assert classic.builder_flags == ("FP16", "GPU_FALLBACK") and classic.notes == (DETAILED_NOTE,)


def test_dla_plans_are_static():
    """The DLA runs one shape: min = opt = max from the class. A class that says otherwise is
    refused when it loads; a plan built around that check still refuses, naming what to set."""
    plan = plan_for("10.3.0", precision="int8", dla_core=0, batch=STATIC)
    (profile,) = plan.profiles
    assert profile.min == profile.opt == profile.max == (4, 3, 8, 8)
    with pytest.raises(
        ValidationError,
        match=r"dla_core 0 needs a static batch .* got 1/4/16; e.g. batch: "
        r"\{min: 4, opt: 4, max: 4\}",
    ):
        trt_class(batch={"min": 1, "opt": 4, "max": 16}, dla_core=0)
    with pytest.raises(ValidationError, match=r"shape_ranges 'ids:1' is 16/64/128; set it to \[64, 64, 64\]"):
        trt_class(batch=STATIC, dla_core=0, shape_ranges={"ids:1": (16, 64, 128)})
    dynamic = trt_class(dla_core=0).model_copy(update={"batch": trt_class().batch})  # past validation
    with pytest.raises(
        PlanError,
        match=r"one static shape .* axis 0 ranges 1/4/16: set the class's batch to \{min: 4, opt: 4, max: 4\}",
    ):
        make_build_plan(dynamic, "10.3.0", IMAGES, IDENTITY, "int8")
    text = [InputShape("ids", (None, None), (4, 128))]
    loose = trt_class(dla_core=0).model_copy(
        update={
            "settings": trt_class(shape_ranges={"ids:1": (16, 64, 128)}, dla_core=None).settings.model_copy(
                update={"dla_core": 0}
            )
        }
    )
    with pytest.raises(
        PlanError,
        match=r"'ids' axis 1 ranges 16/64/128: set settings.shape_ranges\['ids:1'\] to \[64, 64, 64\]",
    ):
        make_build_plan(loose, "10.3.0", text, IDENTITY, "int8")
    fixed = plan_for(
        "10.3.0",
        inputs=text,
        precision="int8",
        dla_core=0,
        batch=STATIC,
        shape_ranges={"ids:1": (64, 64, 64)},
    )
    assert fixed.profiles[0].max == (4, 64)
    fixed_batch = plan_for("10.3.0", inputs=[InputShape("x", (2, 3, 8, 8))], precision="int8", dla_core=0)
    assert fixed_batch.profiles == ()  # a model with static shapes needs no profile, whatever the class
    assert plan_for("10.3.0", precision="int8").profiles[0].max == (16, 3, 8, 8)  # GPU classes stay dynamic


def test_dla_precision_and_version_limits():
    fp32 = plan_for("10.3.0", precision="fp32", dla_core=0, batch=STATIC)
    assert any("will run on the GPU" in note for note in fp32.notes)
    with pytest.raises(PlanError, match="DLA runs FP16 and INT8 layers only"):
        plan_for("10.3.0", precision="fp32", dla_core=0, gpu_fallback=False, batch=STATIC)
    for version in ("11.0.0", "11.3.1"):
        with pytest.raises(PlanError, match="no DLA support"):
            plan_for(version, precision="int8", dla_core=0, batch=STATIC)
    with pytest.raises(PlanError, match="Windows on ARM"):
        plan_for("11.4.0", precision="int8", dla_core=0, batch=STATIC)
    assert plan_for("11.4.1", precision="int8", dla_core=0, batch=STATIC).default_device_type == "DLA"
    assert any(
        "10.7" in note for note in plan_for("10.8.0", precision="int8", dla_core=0, batch=STATIC).notes
    )


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


def test_describe_plan_says_what_was_tried():
    text = describe_plan(plan_for("10.3.0", precision="int8", workspace_mb=512, dla_core=0, batch=STATIC))
    assert text.startswith(
        "TensorRT 10.3.0 (10.x API), strongly typed, flags GPU_FALLBACK, workspace 512 MiB"
    )
    assert (
        "DLA core 0 with GPU fallback" in text
        and "profile images [4, 3, 8, 8]/[4, 3, 8, 8]/[4, 3, 8, 8]" in text
    )
    assert "profile images [1, 3, 8, 8]/[4, 3, 8, 8]/[16, 3, 8, 8]" in describe_plan(plan_for("10.3.0"))


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
