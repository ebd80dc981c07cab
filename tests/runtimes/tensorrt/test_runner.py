"""The runner's messages and arithmetic (no TensorRT), and on a GPU host an engine from another
device refused with a rebuild hint."""

from __future__ import annotations

import pytest

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.runtimes.tensorrt import TensorRTRuntime
from optimize.runtimes.tensorrt.host import identity_from
from optimize.runtimes.tensorrt.runner import (
    batch_chunks,
    device_memory_mb,
    engine_mismatch_message,
    shape_problem,
)
from optimize.targets import builtin_device_classes
from tests.runtimes.tensorrt.common import ORIN, T4, needs_tensorrt_gpu


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


@pytest.mark.gpu
@needs_tensorrt_gpu
def test_an_engine_from_elsewhere_is_refused_with_a_rebuild_hint(tmp_path):
    """Another device's identity: refused before TensorRT sees it. This host's identity but bytes
    TensorRT refuses: its refusal, explained."""
    runtime = TensorRTRuntime()
    device_class = builtin_device_classes()["jetson-orin-tensorrt"]
    elsewhere = identity_from("10.3.0", "system", ORIN, "36.4.3", "aarch64")
    (tmp_path / "model.engine").write_bytes(b"not an engine for this host" * 64)
    write_artifact_meta(
        tmp_path, ArtifactKind.ENGINE, "model.engine", runtime="tensorrt", device=elsewhere, build_plan={}
    )
    with pytest.raises(
        RuntimeError,
        match=r"differs: .*rebuild it on this host \(optimize run RECIPE --target jetson-orin-tensorrt\)",
    ):
        runtime.open(Artifact.open(tmp_path, "x"), device_class)
    write_artifact_meta(
        tmp_path,
        ArtifactKind.ENGINE,
        "model.engine",
        runtime="tensorrt",
        device=runtime.device_identity(device_class),
        build_plan={},
    )
    with pytest.raises(
        RuntimeError,
        match="TensorRT cannot load this engine.*may be damaged.*rebuild it on a 'jetson-orin-tensorrt' host",
    ):
        runtime.open(Artifact.open(tmp_path, "x"), device_class)
