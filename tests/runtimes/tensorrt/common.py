"""What the TensorRT tests share: GPU facts of real devices, a small image model's inputs, device
classes built from settings, and the skip marker for tests that need TensorRT and a GPU."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from optimize.runtimes.tensorrt.host import identity_from
from optimize.runtimes.tensorrt.plan import InputShape, make_build_plan
from optimize.runtimes.tensorrt.probe import GpuFacts, detect_gpu, tensorrt_probe
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
            # a DLA class takes one static shape; others a dynamic batch
            "batch": batch
            or (
                {"min": 4, "opt": 4, "max": 4}
                if settings.get("dla_core") is not None
                else {"min": 1, "opt": 4, "max": 16}
            ),
            "settings": settings,
        }
    )


def plan_for(version="10.3.0", inputs=IMAGES, precision="fp32", **settings):
    return make_build_plan(trt_class(**settings), version, inputs, IDENTITY, precision)


def _why_no_tensorrt_gpu() -> str:
    version, problem = tensorrt_probe()
    if version is None:
        return problem
    facts, problem = detect_gpu()
    return "" if facts is not None else problem


needs_tensorrt_gpu = pytest.mark.skipif(
    bool(_why_no_tensorrt_gpu()), reason=_why_no_tensorrt_gpu() or "ready"
)


def gpu_class(**settings):
    return trt_class(batch={"min": 1, "opt": 4, "max": 16}, name="gpu-test-tensorrt", **settings)
