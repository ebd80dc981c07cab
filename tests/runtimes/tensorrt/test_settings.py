"""TensorRTSettings: the device class settings and their validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from optimize.runtimes.tensorrt.settings import TensorRTSettings
from optimize.targets import builtin_device_classes


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
