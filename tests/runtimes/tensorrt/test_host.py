"""Engine identity, cache keys, timing cache names and locations, and availability on a host,
all computed from plain host facts (no TensorRT, no GPU)."""

from __future__ import annotations

import dataclasses

import pytest

from optimize.keys import engine_build_settings, engine_key
from optimize.runtimes.tensorrt.host import (
    IDENTITY_FIELDS,
    TIMING_CACHE_ENV,
    TIMING_CACHE_FIELDS,
    availability_for,
    hardware_mismatch,
    identity_from,
    identity_mismatch,
    timing_cache_dir,
    timing_cache_name,
)
from optimize.store import ArtifactStore
from optimize.targets import builtin_device_classes
from tests.runtimes.tensorrt.common import A100, IDENTITY, ORIN, T4, plan_for, trt_class

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
    assert "ampere_plus is not supported on integrated GPUs" in hardware_mismatch(
        trt_class(hardware_compatibility="ampere_plus"), ORIN, "aarch64"
    )
    assert (
        "not supported on integrated GPUs"
        in _available(builtin_device_classes()["ampere-plus-tensorrt"], ORIN, host="aarch64").reason
    )
    assert hardware_mismatch(trt_class(dla_core=0), ORIN, "aarch64") is None


@pytest.mark.parametrize(
    "name, facts, host, version",
    [
        ("t4-tensorrt", T4, "x86_64", "10.7.0"),
        ("jetson-orin-tensorrt", ORIN, "aarch64", "10.3.0"),
        ("jetson-orin-nano-tensorrt", dataclasses.replace(ORIN, sm_count=8), "aarch64", "10.3.0"),
        ("ampere-plus-tensorrt", A100, "x86_64", "11.1.0"),
    ],
)
def test_classes_available_on_their_devices(name, facts, host, version):
    availability = _available(builtin_device_classes()[name], facts, trt=version, host=host)
    assert availability.can_build and availability.can_run and availability.reason == ""


# -- the identity an engine was built with against this host's ---------------------------------------
AGX = identity_from("10.3.0", "system", ORIN, "36.4.3", "aarch64")
NANO = identity_from("10.3.0", "system", dataclasses.replace(ORIN, sm_count=8), "36.4.3", "aarch64")


def test_identity_mismatch_catches_what_tensorrt_may_only_warn_about():
    assert identity_mismatch(AGX, AGX) is None
    reason = identity_mismatch(AGX, NANO)  # both compute capability 8.7
    assert reason == (
        "the engine was built with TensorRT 10.3.0 on Orin (16 SMs, compute capability 8.7, L4T 36.4.3), this "
        "host has TensorRT 10.3.0 on Orin (8 SMs, compute capability 8.7, L4T 36.4.3) (differs: sm_count 16 vs 8): "
        "rebuild it on this host"
    )
    assert "\n" not in reason
    assert "l4t '36.4.3' vs '36.4.4'" in identity_mismatch(AGX, {**AGX, "l4t": "36.4.4"})  # another JetPack
    assert "version '10.3.0' vs '10.7.0'" in identity_mismatch(AGX, {**AGX, "version": "10.7.0"})
    assert (
        identity_mismatch({"gpu": "Orin"}, AGX) is None
    )  # fields the engine did not record are not compared


def test_compatibility_modes_relax_the_identity_check():
    a100 = identity_from("10.3.0", "cu12", A100, None, "x86_64")
    h100 = {**a100, "gpu": "NVIDIA H100", "compute_capability": "9.0", "sm_count": 132}
    ampere_plus = {"hardware_compatibility_level": "AMPERE_PLUS"}
    assert identity_mismatch(a100, h100, ampere_plus) is None
    assert "compute_capability" in identity_mismatch(
        a100, {**h100, "compute_capability": "7.5"}, ampere_plus
    )  # a Turing GPU is outside ampere_plus
    same_cc = {"hardware_compatibility_level": "SAME_COMPUTE_CAPABILITY"}
    assert identity_mismatch(AGX, NANO, same_cc) is None
    assert "compute_capability" in identity_mismatch(a100, h100, same_cc)
    compatible = {"version_compatible": True}
    assert identity_mismatch(a100, {**a100, "version": "10.9.0"}, compatible) is None
    assert "version" in identity_mismatch(a100, {**a100, "version": "10.2.0"}, compatible)  # older runtime
    assert "version" in identity_mismatch(a100, {**a100, "version": "11.1.0"}, compatible)  # other major
