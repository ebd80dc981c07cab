"""The pure translation of a device class, one TensorRT version and one model's inputs into a
`BuildPlan`: every builder option as a plain value, recorded in artifact.json.

The code follows both API lines: 10.x (strong typing opt-in, weak-typing flags deprecated) and
11.x (every network strongly typed; FP16/INT8 builder flags and calibrators removed). Precision
therefore comes from the ONNX file; no calibrator is used anywhere.

No TensorRT here, on purpose: what a class asks for, and why a version or model cannot do it
(`PlanError`), is decided and unit-tested without the library; `builder.apply_plan` only copies the
plan onto a real builder config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optimize.runtimes.tensorrt.host import parse_version, timing_cache_name

if TYPE_CHECKING:
    from collections.abc import Mapping

    from optimize.runtimes.tensorrt.settings import TensorRTSettings


class PlanError(ValueError):
    """The device class asks for something this TensorRT version or model cannot do."""


@dataclass(frozen=True)
class InputShape:
    name: str
    dims: tuple[int | None, ...]  # None: a dynamic axis
    example: tuple[int, ...] | None = None  # the recipe's example shape, where the artifact has it


@dataclass(frozen=True)
class ProfileShape:
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class BuildPlan:
    """Everything the builder is told, as plain values: recorded in artifact.json and tested."""

    tensorrt_version: str
    api_line: int  # 10 or 11: which API the adapter follows
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # BuilderFlag names to set
    cleared_builder_flags: tuple[str, ...]  # BuilderFlag names to clear (TF32 is on by default)
    memory_pool_limits: dict[str, int]  # MemoryPoolType name -> bytes
    builder_optimization_level: int
    hardware_compatibility_level: str  # HardwareCompatibilityLevel name
    default_device_type: str  # DeviceType name: GPU or DLA
    dla_core: int | None
    profiles: tuple[ProfileShape, ...]  # one optimisation profile: min/opt/max per dynamic input
    max_aux_streams: int | None
    profiling_verbosity: str  # ProfilingVerbosity name
    version_compatible: bool
    timing_cache_file: str | None  # file name in the timing cache folder; None: no timing cache
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _static_problem(name: str, axis: int, triple: tuple[int, int, int], key: str) -> str:
    """Why a DLA plan cannot take this axis: the DLA runs one shape only (min = opt = max)."""
    low, opt, high = triple
    fix = (
        f"set the class's batch to {{min: {opt}, opt: {opt}, max: {opt}}}"
        if axis == 0
        else f"set settings.shape_ranges['{key}'] to [{opt}, {opt}, {opt}]"
    )
    return (
        f"a DLA engine takes one static shape (min = opt = max) and input '{name}' axis {axis} ranges "
        f"{low}/{opt}/{high}: {fix}, or drop dla_core to run it on the GPU"
    )


def optimization_profile(
    inputs: list[InputShape],
    batch,
    shape_ranges: Mapping[str, tuple[int, int, int]],
    static: bool = False,
) -> tuple[tuple[ProfileShape, ...], list[str]]:
    """min/opt/max shapes of every input with a dynamic axis: axis 0 from the class's batch
    profile, other dynamic axes from settings.shape_ranges (else fixed to the example shape).
    `static` (DLA): every range must be a single shape, else PlanError says which to fix."""
    profiles, notes, used = [], [], set()
    for spec in inputs:
        if all(dim is not None for dim in spec.dims):
            if spec.dims and not batch.min == batch.max == spec.dims[0]:
                notes.append(
                    f"input '{spec.name}' has a fixed batch of {spec.dims[0]}: the class's batch profile does not "
                    "apply and the runner feeds it that many samples at a time"
                )
            continue
        low, opt, high = [], [], []
        for axis, dim in enumerate(spec.dims):
            key = f"{spec.name}:{axis}"
            if dim is not None:
                triple = (dim, dim, dim)
            elif axis == 0:
                triple = (batch.min, batch.opt, batch.max)
            elif key in shape_ranges:
                triple = tuple(shape_ranges[key])
                used.add(key)
            elif spec.example is not None and len(spec.example) > axis:
                triple = (spec.example[axis],) * 3
                notes.append(
                    f"input '{spec.name}' axis {axis} is dynamic and fixed to {spec.example[axis]} (the example "
                    f"shape); set settings.shape_ranges['{key}'] to accept other sizes"
                )
            else:
                raise PlanError(
                    f"input '{spec.name}' axis {axis} is dynamic: set settings.shape_ranges['{key}'] = "
                    "[min, opt, max] in the device class"
                )
            if static and not triple[0] == triple[1] == triple[2]:
                raise PlanError(_static_problem(spec.name, axis, triple, key))
            low.append(triple[0])
            opt.append(triple[1])
            high.append(triple[2])
        profiles.append(ProfileShape(spec.name, tuple(low), tuple(opt), tuple(high)))
    notes += [
        f"settings.shape_ranges['{key}'] matches no dynamic axis of this model"
        for key in sorted(set(shape_ranges) - used)
    ]
    return tuple(profiles), notes


def network_flags_for(settings: TensorRTSettings, version: tuple[int, ...]) -> tuple[tuple[str, ...], bool]:
    """Network creation flags and whether the network is strongly typed. 10.x: STRONGLY_TYPED is
    opt-in and EXPLICIT_BATCH is deprecated and ignored (never passed). 11.x: every network is
    strongly typed, EXPLICIT_BATCH is gone and STRONGLY_TYPED is deprecated and ignored (not passed)."""
    if version[0] >= 11:
        if not settings.strongly_typed:
            raise PlanError(
                "strongly_typed: false is impossible on TensorRT 11.x, which removed weak typing; "
                "pin the class to runtime_version '10.*' or put the precision in the ONNX file"
            )
        return (), True
    return (("STRONGLY_TYPED",), True) if settings.strongly_typed else ((), False)


def dla_problem(version: tuple[int, ...]) -> str | None:
    """DLA availability by TensorRT version, from NVIDIA's 'Working with DLA' (11.4.1 docs)."""
    if (11, 0) <= version < (11, 4):
        return f"TensorRT {'.'.join(map(str, version))} has no DLA support (11.0-11.3); use TensorRT 10.x (JetPack 6) or ≥ 11.4.1 (JetPack 7.2.2+)"
    if (11, 4) <= version < (11, 4, 1):
        return "TensorRT 11.4.0 supports DLA only on Windows on ARM; use ≥ 11.4.1 on JetPack 7.2.2+ or TensorRT 10.x"
    return None


def _precision_flags(precision: str, strongly_typed: bool, settings: TensorRTSettings) -> list[str]:
    """Builder flags for precision. Strongly typed: none, the ONNX types decide. Weak typing (10.x
    only): FP16 when asked, INT8 for a QDQ model (explicit quantization, no calibrator)."""
    if strongly_typed:
        return []
    if precision == "int4":
        raise PlanError("an INT4 model needs a strongly typed network: set strongly_typed: true")
    flags = ["FP16"] if settings.allow_fp16 else []
    return flags + (["INT8"] if precision == "int8" else [])


def _dla_settings(
    settings: TensorRTSettings, version, precision: str, strongly_typed: bool
) -> tuple[str, list[str], list[str]]:
    """Default device type, extra builder flags and notes for a DLA class."""
    if settings.dla_core is None:
        return "GPU", [], []
    problem = dla_problem(version)
    if problem:
        raise PlanError(problem)
    notes = []
    if version[0] == 10 and version >= (10, 8):
        notes.append(
            "NVIDIA documents TensorRT 10.7 as the last 10.x release with DLA; the build checks the DLA cores it finds"
        )
    runs_on_dla = precision in ("fp16", "int8") or (not strongly_typed and settings.allow_fp16)
    if not runs_on_dla:
        if not settings.gpu_fallback:
            raise PlanError(
                f"DLA runs FP16 and INT8 layers only and this model is {precision} with gpu_fallback off: "
                "export FP16 or quantize the model (or, on 10.x, set strongly_typed: false and allow_fp16: true)"
            )
        notes.append(
            f"DLA runs FP16 and INT8 layers only: this {precision} model will run on the GPU (gpu_fallback)"
        )
    return "DLA", (["GPU_FALLBACK"] if settings.gpu_fallback else []), notes


def _hardware_level(settings: TensorRTSettings, version: tuple[int, ...]) -> str:
    if settings.hardware_compatibility == "same_compute_capability" and version < (10, 9):
        raise PlanError("hardware_compatibility 'same_compute_capability' needs TensorRT ≥ 10.9")
    return settings.hardware_compatibility.upper()


def make_build_plan(
    device_class,
    trt_version: str,
    inputs: list[InputShape],
    identity: Mapping[str, Any],
    precision: str = "fp32",
) -> BuildPlan:
    """Translate a device class for one TensorRT version and one model into builder settings."""
    settings: TensorRTSettings = device_class.settings
    version = parse_version(trt_version)
    if not version or version[0] < 10:
        raise PlanError(f"TensorRT {trt_version} is older than the 10.x API this runtime follows")
    notes: list[str] = []
    if version[0] > 11:
        notes.append(f"TensorRT {trt_version} is newer than the 11.x API this runtime follows")
    network_flags, strongly_typed = network_flags_for(settings, version)
    builder_flags = _precision_flags(precision, strongly_typed, settings)
    device_type, dla_flags, dla_notes = _dla_settings(settings, version, precision, strongly_typed)
    builder_flags += dla_flags
    if settings.sparse_weights:
        builder_flags.append("SPARSE_WEIGHTS")
    if settings.version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
    profiles, profile_notes = optimization_profile(
        inputs, device_class.batch, settings.shape_ranges, static=device_type == "DLA"
    )
    verbosity = settings.profiling_verbosity.upper()
    if device_type == "DLA" and verbosity != "DETAILED":
        verbosity = "DETAILED"  # the engine inspector names each layer's device only in detailed mode
        notes.append("profiling_verbosity raised to detailed: the build records which layers run on the DLA")
    if settings.timing_cache and settings.builder_optimization_level == 0:
        notes.append("builder optimisation level 0 does not use the timing cache")
    return BuildPlan(
        tensorrt_version=trt_version,
        api_line=11 if version[0] >= 11 else 10,
        network_flags=network_flags,
        strongly_typed=strongly_typed,
        builder_flags=tuple(builder_flags),
        cleared_builder_flags=() if settings.tf32 else ("TF32",),
        memory_pool_limits={"WORKSPACE": settings.workspace_mb * 2**20} if settings.workspace_mb else {},
        builder_optimization_level=settings.builder_optimization_level,
        hardware_compatibility_level=_hardware_level(settings, version),
        default_device_type=device_type,
        dla_core=settings.dla_core,
        profiles=profiles,
        max_aux_streams=settings.max_aux_streams,
        profiling_verbosity=verbosity,
        version_compatible=settings.version_compatible,
        timing_cache_file=timing_cache_name(device_class.name, identity) if settings.timing_cache else None,
        notes=tuple(notes + dla_notes + profile_notes),
    )


def describe_plan(plan: BuildPlan) -> str:
    """The plan in one line, for error messages ('what was tried')."""
    parts = [
        f"TensorRT {plan.tensorrt_version} ({plan.api_line}.x API)",
        "strongly typed" if plan.strongly_typed else "weakly typed",
    ]
    if plan.builder_flags:
        parts.append("flags " + "+".join(plan.builder_flags))
    if "WORKSPACE" in plan.memory_pool_limits:
        parts.append(f"workspace {plan.memory_pool_limits['WORKSPACE'] // 2**20} MiB")
    parts.append(f"optimisation level {plan.builder_optimization_level}")
    if plan.default_device_type == "DLA":
        parts.append(
            f"DLA core {plan.dla_core}"
            + (" with GPU fallback" if "GPU_FALLBACK" in plan.builder_flags else "")
        )
    if plan.hardware_compatibility_level != "NONE":
        parts.append(f"hardware compatibility {plan.hardware_compatibility_level}")
    parts += [f"profile {p.name} {list(p.min)}/{list(p.opt)}/{list(p.max)}" for p in plan.profiles]
    return ", ".join(parts)
