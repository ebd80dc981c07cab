"""TensorRT on NVIDIA GPUs (and the DLA of Jetson Orin). The build parses the ONNX file (FP32,
FP16 or INT8 QDQ) and builds a serialized engine for the GPU of the build host; evaluation
deserializes it and runs it through execute_async_v3, timed with CUDA events.

The code follows both API lines: 10.x (strong typing opt-in, weak-typing flags deprecated) and
11.x (every network strongly typed; FP16/INT8 builder flags and calibrators removed). Precision
therefore comes from the ONNX file; no calibrator is used anywhere.

Layout of this file:
  * `TensorRTSettings`: the device class `settings:`.
  * pure functions: device class + TensorRT version + the model's inputs -> `BuildPlan`,
    availability, identity, cache names and error messages (unit-tested without TensorRT);
  * host probes: TensorRT version, GPU facts (through cuda-python, without TensorRT);
  * the adapter that applies a `BuildPlan` with the real `tensorrt` module, and the runner.

`tensorrt` and `cuda-python` are imported inside functions only, so importing
`optimize.runtimes` never needs them. Device buffers, streams and events use cuda-python
(`cuda.bindings.runtime`), as NVIDIA's own TensorRT samples do since 10.13: it works on Jetson,
where PyPI's torch has no CUDA, and keeps torch out of the evaluation worker.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.errors import TargetError
from optimize.hashing import hash_value
from optimize.recipe.base import StrictModel
from optimize.registries import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime, version_matches

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

log = logging.getLogger(__name__)

ENGINE_FILE = "model.engine"
TIMING_CACHE_ENV = "OPTIMIZE_TENSORRT_TIMING_CACHE_DIR"
TIMING_CACHE_FOLDER = "tensorrt-timing-cache"
INSTALL_HINT = (
    "install optimize's tensorrt extra on a host with an NVIDIA GPU; on Jetson it comes with JetPack"
)


# -- the device class settings ---------------------------------------------------------------
class TensorRTSettings(StrictModel):
    workspace_mb: PositiveInt | None = Field(
        None,
        description="limit of the WORKSPACE memory pool (scratch memory of one layer); null: TensorRT's default, all device memory",
    )
    builder_optimization_level: int = Field(
        3,
        ge=0,
        le=5,
        description="0-5: higher searches longer for faster kernels (3 is TensorRT's default; 0 ignores the timing cache)",
    )
    strongly_typed: bool = Field(
        True,
        description="TensorRT 10.x: build a strongly typed network (precision from the ONNX file). Always on in 11.x",
    )
    allow_fp16: bool = Field(
        False,
        description="TensorRT 10.x weak typing only (needs strongly_typed: false): let TensorRT pick FP16 kernels for an FP32 "
        "model (BuilderFlag.FP16, the classic JetPack 6 DLA flow). Removed in 11.x: there the ONNX file must carry FP16",
    )
    tf32: bool = Field(
        True, description="allow TF32 math for FP32 layers on Ampere and newer (TensorRT's default)"
    )
    sparse_weights: bool = Field(
        False, description="use 2:4 structured-sparsity kernels where the weights allow it"
    )
    dla_core: NonNegativeInt | None = Field(
        None,
        description="run on this DLA core of a Jetson Orin (null: GPU only). DLA runs FP16 and INT8 layers only",
    )
    gpu_fallback: bool = Field(
        True,
        description="with dla_core: layers the DLA cannot run go to the GPU instead of failing the build",
    )
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = Field(
        "none",
        description="none: engine runs on the build GPU's model only; ampere_plus: on any Ampere or newer GPU (built on "
        "Ampere+); same_compute_capability: on GPUs of the build GPU's compute capability (TensorRT >= 10.9). Both are slower",
    )
    version_compatible: bool = Field(
        False,
        description="embed the lean runtime so later TensorRT versions of the same major line can run the engine (slower)",
    )
    timing_cache: bool = Field(
        True,
        description="reuse and extend a timing cache per device class, GPU, CUDA and TensorRT version: faster rebuilds",
    )
    max_aux_streams: NonNegativeInt | None = Field(
        None,
        description="auxiliary CUDA streams TensorRT may use for parallel branches (0: single stream; null: TensorRT decides)",
    )
    profiling_verbosity: Literal["layer_names_only", "detailed", "none"] = Field(
        "layer_names_only",
        description="layer information kept in the engine for the engine inspector and NVTX",
    )
    shape_ranges: dict[str, tuple[PositiveInt, PositiveInt, PositiveInt]] = Field(
        default_factory=dict,
        description="min, opt, max of dynamic non-batch axes, keyed 'input:axis' (e.g. {'input_ids:1': [16, 128, 512]}); "
        "the batch axis comes from the class's batch profile",
    )
    compute_capability: str | None = Field(
        None,
        pattern=r"^(>=)?\d+\.\d+$",
        description="GPU the class is for: '8.7' exactly, or a minimum like '>=8.0'",
    )
    integrated_gpu: bool | None = Field(
        None, description="true: a Jetson-style integrated GPU; false: a discrete GPU; null: either"
    )

    @field_validator("shape_ranges")
    @classmethod
    def _ranges(cls, ranges: dict[str, tuple[int, int, int]]) -> dict[str, tuple[int, int, int]]:
        for key, (low, opt, high) in ranges.items():
            name, _, axis = key.rpartition(":")
            if not name or not axis.isdigit() or int(axis) == 0:
                raise ValueError(
                    f"key '{key}' must be 'input:axis' with axis ≥ 1 (axis 0 follows the class's batch profile)"
                )
            if not low <= opt <= high:
                raise ValueError(f"'{key}' needs min ≤ opt ≤ max, got {low}, {opt}, {high}")
        return ranges

    @model_validator(mode="after")
    def _weak_typing(self) -> TensorRTSettings:
        if self.allow_fp16 and self.strongly_typed:
            raise ValueError(
                "allow_fp16 needs strongly_typed: false (TensorRT 10.x weak typing); a strongly typed network takes "
                "its precision from the ONNX file"
            )
        return self


# -- plain data --------------------------------------------------------------------------------
class PlanError(ValueError):
    """The device class asks for something this TensorRT version or model cannot do."""


@dataclass(frozen=True)
class GpuFacts:
    name: str
    compute_capability: str  # "8.7"
    sm_count: int
    integrated: bool
    total_memory_mb: int
    cuda_runtime: str  # "12.6": the CUDA runtime cuda-python reports in this process
    cuda_driver: str  # "12.6": the newest CUDA the installed driver supports
    driver: str  # "540.4.0", from /proc/driver/nvidia/version ("" where absent)


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


# -- pure functions: versions and host facts ---------------------------------------------------
def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26); trailing non-numeric parts are ignored."""
    numbers = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def cuda_version_text(encoded: int) -> str:
    """CUDA's 1000*major + 10*minor encoding (12060) as '12.6'."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}" if encoded else "none"


def parse_tegra_release(text: str) -> str | None:
    """The L4T release in /etc/nv_tegra_release ('# R36 (release), REVISION: 4.3, ...' -> '36.4.3')."""
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{found.group(1)}.{found.group(2)}" if found else None


def parse_driver_version(text: str) -> str | None:
    """The NVIDIA kernel module version in /proc/driver/nvidia/version."""
    found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return found.group(1) if found else None


def no_gpu_reason(error_name: str, runtime_version: int, driver_version: int) -> str:
    """Why cudaGetDeviceCount failed, in words a user can act on."""
    if error_name == "cudaErrorInsufficientDriver":
        if not driver_version:
            return f"no CUDA GPU is visible: no NVIDIA driver is loaded ({error_name})"
        return (
            f"no CUDA GPU is usable: the NVIDIA driver supports CUDA {cuda_version_text(driver_version)}, older than "
            f"the CUDA {cuda_version_text(runtime_version)} of the installed cuda-python; install cuda-python "
            f"{driver_version // 1000}.x (the CUDA line of TensorRT) or a newer driver"
        )
    if error_name == "cudaErrorNoDevice":
        return f"no CUDA GPU is visible ({error_name}; check CUDA_VISIBLE_DEVICES)"
    return f"no CUDA GPU is visible ({error_name})"


def _compute_capability_ok(wanted: str, have: str) -> bool:
    if wanted.startswith(">="):
        return parse_version(have) >= parse_version(wanted[2:])
    return parse_version(have) == parse_version(wanted)


def hardware_mismatch(device_class, facts: GpuFacts, host_arch: str) -> str | None:
    """Why this host's CPU architecture or GPU cannot build engines for the class, or None.
    TensorRT tunes kernels on the GPU it builds on, so the build host must be a class device."""
    settings: TensorRTSettings = device_class.settings
    gpu = f"{facts.name} (compute capability {facts.compute_capability})"
    if device_class.arch not in ("any", host_arch):
        return f"the class runs on {device_class.arch} hosts; this host is {host_arch}"
    if settings.compute_capability and not _compute_capability_ok(
        settings.compute_capability, facts.compute_capability
    ):
        wanted = settings.compute_capability
        wanted_text = (
            f"≥ {wanted[2:]}" if wanted.startswith(">=") else f"{wanted} (sm_{wanted.replace('.', '')})"
        )
        return f"the class needs a GPU with compute capability {wanted_text}; this host has {gpu}"
    if settings.integrated_gpu is True and not facts.integrated:
        return f"the class needs an integrated (Jetson) GPU; this host has a discrete {gpu}"
    if settings.integrated_gpu is False and facts.integrated:
        return f"the class needs a discrete GPU; this host has an integrated {gpu}"
    if settings.hardware_compatibility == "ampere_plus" and parse_version(facts.compute_capability) < (8, 0):
        return f"ampere_plus engines must be built on an Ampere or newer GPU (compute capability ≥ 8.0); this host has {gpu}"
    if settings.hardware_compatibility == "same_compute_capability" and parse_version(
        facts.compute_capability
    ) < (7, 5):
        return f"same_compute_capability engines need a Turing or newer GPU; this host has {gpu}"
    if settings.dla_core is not None and not facts.integrated:
        return f"the class asks for DLA core {settings.dla_core}; a DLA exists only next to Jetson Orin GPUs, not on {gpu}"
    return None


def availability_for(
    device_class,
    trt_version: str | None,
    trt_problem: str,
    facts: GpuFacts | None,
    gpu_problem: str,
    host_arch: str,
) -> Availability:
    """Building needs TensorRT of the class's version line and a GPU of the class on this host;
    running needs the same, so both answers are equal."""
    if trt_version is None:
        return Availability(False, False, trt_problem)
    if not version_matches(trt_version, device_class.runtime_version):
        return Availability(
            False,
            False,
            f"tensorrt {trt_version} is installed; the class needs {device_class.runtime_version}",
        )
    if facts is None:
        return Availability(False, False, gpu_problem)
    mismatch = hardware_mismatch(device_class, facts, host_arch)
    if mismatch:
        return Availability(False, False, mismatch)
    return Availability(True, True)


IDENTITY_FIELDS = (
    "version",
    "tensorrt_cuda",
    "gpu",
    "compute_capability",
    "sm_count",
    "cuda_runtime",
    "cuda_driver",
    "driver",
    "l4t",
    "arch",
)
TIMING_CACHE_FIELDS = (
    "version",
    "tensorrt_cuda",
    "gpu",
    "compute_capability",
    "sm_count",
    "cuda_runtime",
    "arch",
)


def identity_from(
    trt_version: str, tensorrt_cuda: str, facts: GpuFacts, l4t: str | None, host_arch: str
) -> dict[str, Any]:
    """What an engine depends on besides the model and the class settings: TensorRT and its CUDA,
    the GPU model (name, compute capability, SM count: Orin AGX and Orin Nano share 8.7), the
    driver, the Jetson L4T release and the CPU architecture. Not the GPU's memory size or serial."""
    return {
        "runtime": "tensorrt",
        "version": trt_version,
        "tensorrt_cuda": tensorrt_cuda,
        "gpu": facts.name,
        "compute_capability": facts.compute_capability,
        "sm_count": facts.sm_count,
        "cuda_runtime": facts.cuda_runtime,
        "cuda_driver": facts.cuda_driver,
        "driver": facts.driver,
        "l4t": l4t,
        "arch": host_arch,
    }


def timing_cache_name(class_name: str, identity: Mapping[str, Any]) -> str:
    """One timing cache per device class and device + CUDA + TensorRT version (TensorRT rejects
    a cache from another device or version, so mixing them would only throw the work away)."""
    key = hash_value({name: identity.get(name) for name in TIMING_CACHE_FIELDS})[:16]
    return f"{class_name}-{key}.timing-cache"


def timing_cache_dir(workdir: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where timing caches live: $OPTIMIZE_TENSORRT_TIMING_CACHE_DIR, else a folder next to the
    artifact store whose work folder `workdir` is (<artifacts>/tensorrt-timing-cache), else the
    user cache. Never inside the engine folder: that is content-addressed and immutable."""
    override = environ.get(TIMING_CACHE_ENV)
    if override:
        return Path(override)
    tmp = workdir.parent
    if tmp.name == "tmp" and (tmp.parent / "objects").is_dir():  # <artifacts>/store/tmp/<work>
        return tmp.parent.parent / TIMING_CACHE_FOLDER
    cache_home = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "optimize" / TIMING_CACHE_FOLDER


# -- pure functions: the build plan ------------------------------------------------------------
def optimization_profile(
    inputs: list[InputShape], batch, shape_ranges: Mapping[str, tuple[int, int, int]]
) -> tuple[tuple[ProfileShape, ...], list[str]]:
    """min/opt/max shapes of every input with a dynamic axis: axis 0 from the class's batch
    profile, other dynamic axes from settings.shape_ranges (else fixed to the example shape)."""
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
    profiles, profile_notes = optimization_profile(inputs, device_class.batch, settings.shape_ranges)
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
        profiling_verbosity=settings.profiling_verbosity.upper(),
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


# -- pure functions: messages and runner arithmetic --------------------------------------------
def format_parser_errors(path: Path | str, errors: list[dict[str, Any]]) -> str:
    """Every ONNX parser error in one message: node index, name, operator, code and description."""
    shown = []
    for number, error in enumerate(errors, 1):
        node = error.get("node", -1)
        where = "model" if node is None or node < 0 else f"node {node}"
        if error.get("node_name"):
            where += f" '{error['node_name']}'"
        if error.get("operator"):
            where += f" ({error['operator']})"
        shown.append(f"[{number}] {where}: {error.get('code', 'error')}: {error.get('desc', '').strip()}")
    count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
    message = f"TensorRT's ONNX parser rejected {Path(path).name} with {count}: " + "; ".join(
        shown or ["(no details)"]
    )
    if any(
        e.get("operator") == "DequantizeLinear" and "activation types" in e.get("desc", "") for e in errors
    ):
        message += (
            " (TensorRT dequantizes only activations and weights: a QDQ model from ONNX Runtime's quantize_static "
            "needs extra_options QuantizeBias=False so biases stay float)"
        )
    return message


def _identity_summary(identity: Mapping[str, Any]) -> str:
    return (
        f"TensorRT {identity.get('version', '?')} on {identity.get('gpu', '?')} (compute capability "
        f"{identity.get('compute_capability', '?')}, {identity.get('sm_count', '?')} SMs, {identity.get('arch', '?')})"
    )


def engine_mismatch_message(
    class_name: str, built: Mapping[str, Any], here: Mapping[str, Any], details: list[str] | None = None
) -> str:
    """Why deserialize_cuda_engine refused an engine, and what to do about it."""
    differing = [
        f"{name} {built.get(name)!r} vs {here.get(name)!r}"
        for name in IDENTITY_FIELDS
        if name in built and built.get(name) != here.get(name)
    ]
    message = (
        f"TensorRT cannot load this engine: it was built with {_identity_summary(built)}, this host has "
        f"{_identity_summary(here)}"
    )
    message += (
        f" (differs: {', '.join(differing)})"
        if differing
        else " (same identity: the engine file may be damaged)"
    )
    message += (
        f". Engines are tied to the TensorRT version and GPU they were built with: rebuild it on a "
        f"'{class_name}' host (optimize run RECIPE --target {class_name})"
    )
    return message + (f"; TensorRT said: {details[-1]}" if details else "")


def batch_chunks(total: int, fixed: int) -> list[tuple[int, int]]:
    """Slices that feed an engine with a fixed batch size batch by batch."""
    if total % fixed:
        raise ValueError(
            f"the engine has a fixed batch of {fixed} and got {total} samples; export the model with a "
            "dynamic batch axis"
        )
    return [(start, start + fixed) for start in range(0, total, fixed)]


def shape_problem(
    name: str, shape: tuple[int, ...], low: tuple[int, ...], high: tuple[int, ...]
) -> str | None:
    """Why a feed's shape is outside the engine's optimisation profile, or None."""
    if len(shape) != len(low) or any(
        not lo <= dim <= hi for dim, lo, hi in zip(shape, low, high, strict=True)
    ):
        return (
            f"input '{name}' has shape {list(shape)}; the engine accepts {list(low)} to {list(high)} "
            "(the device class's batch profile and shape_ranges)"
        )
    return None


def device_memory_mb(measured_bytes: int, activation_bytes: int, buffer_bytes: int) -> float:
    """GPU memory the runner holds: the measured drop in free memory when the engine was loaded
    (weights + activations + I/O buffers), never less than the activations and buffers we know of
    (free memory is shared with other processes, and on Jetson with the CPU)."""
    return max(measured_bytes, activation_bytes + buffer_bytes) / 2**20


# -- host probes ------------------------------------------------------------------------------
@functools.cache
def tensorrt_probe() -> tuple[str | None, str]:
    """(version, '') when `tensorrt` imports, else (None, why)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None, f"tensorrt is not installed ({INSTALL_HINT})"
    try:
        import tensorrt
    except Exception as exc:  # a wheel without its libraries, a CUDA mismatch, ...
        return None, f"tensorrt is installed but cannot be imported: {type(exc).__name__}: {exc}"
    return str(tensorrt.__version__), ""


def tensorrt_cuda_line() -> str:
    """The CUDA major line of the TensorRT wheels (tensorrt-cu12 / -cu13), or 'system' (JetPack, apt)."""
    for major in ("13", "12", "11"):
        for name in (f"tensorrt-cu{major}", f"tensorrt_cu{major}_libs", f"tensorrt-cu{major}-libs"):
            try:
                importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            return f"cu{major}"
    return "system"


def _cudart():
    """cuda-python's runtime module (cuda.bindings.runtime; `cuda.cudart` before cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


@functools.cache
def detect_gpu() -> tuple[GpuFacts | None, str]:
    """Facts about CUDA device 0, found through cuda-python without TensorRT; (None, why) when
    there is none. One call per process: the answer does not change while it runs."""
    try:
        cudart = _cudart()
    except ImportError:
        return (
            None,
            "cuda-python is not installed (optimize's tensorrt extra): it finds the GPU and feeds the engine",
        )
    runtime_version = cudart.cudaRuntimeGetVersion()[1] or 0
    driver_version = cudart.cudaDriverGetVersion()[1] or 0
    error, count = cudart.cudaGetDeviceCount()
    if error.value != 0:
        return None, no_gpu_reason(
            cudart.cudaGetErrorName(error)[1].decode(), runtime_version, driver_version
        )
    if count == 0:
        return None, "no CUDA GPU is visible (0 devices)"
    error, props = cudart.cudaGetDeviceProperties(0)
    if error.value != 0:
        return (
            None,
            f"cannot read the properties of CUDA device 0 ({cudart.cudaGetErrorName(error)[1].decode()})",
        )
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuFacts(
        name=name.split("\x00", 1)[0].strip(),
        compute_capability=f"{props.major}.{props.minor}",
        sm_count=int(props.multiProcessorCount),
        integrated=bool(props.integrated),
        total_memory_mb=int(props.totalGlobalMem) // 2**20,
        cuda_runtime=cuda_version_text(runtime_version),
        cuda_driver=cuda_version_text(driver_version),
        driver=parse_driver_version(_read("/proc/driver/nvidia/version")) or "",
    ), ""


def onnx_input_shapes(model: Artifact) -> list[InputShape]:
    """The graph inputs of the ONNX file (initializers excluded), with the recipe's example shape
    from artifact.json where the export recorded it."""
    import onnx

    graph = onnx.load(str(model.file), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    examples = {spec.get("name"): tuple(spec.get("shape", ())) for spec in model.meta.get("inputs", []) or []}
    shapes = []
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = tuple(
            dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
            for dim in value.type.tensor_type.shape.dim
        )
        shapes.append(InputShape(value.name, dims, examples.get(value.name) or None))
    return shapes


def _atomic_write_bytes(path: Path, data) -> None:
    """Write beside the target and rename: a concurrent reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


# -- the TensorRT adapter (needs tensorrt and a GPU) -----------------------------------------------
def _import_tensorrt():
    import tensorrt

    return tensorrt


def _collecting_logger(trt):
    """A TensorRT logger that keeps warnings and errors, so failures can quote TensorRT."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity, msg):
            level = int(severity)
            if level <= int(trt.ILogger.Severity.WARNING):
                self.messages.append((level, msg))
                log.log(
                    logging.ERROR if level <= int(trt.ILogger.Severity.ERROR) else logging.WARNING,
                    "TensorRT: %s",
                    msg,
                )

        def errors(self) -> list[str]:
            return [msg for level, msg in self.messages if level <= int(trt.ILogger.Severity.ERROR)]

    return CollectingLogger()


def _enum(trt, enum_name: str, member: str):
    """trt.<enum>.<member>, or a clear error naming the TensorRT version that lacks it."""
    try:
        return getattr(getattr(trt, enum_name), member)
    except AttributeError:
        raise PlanError(f"TensorRT {trt.__version__} has no {enum_name}.{member}") from None


def _parser_error(error) -> dict[str, Any]:
    return {
        "code": str(error.code()).rsplit(".", 1)[-1],
        "node": error.node(),
        "node_name": error.node_name(),
        "operator": error.node_operator(),
        "desc": error.desc(),
    }


def _parse(trt, network, logger, model_path: Path):
    """Parse into the network; the parser is returned because it owns the weights the network
    points to and must live until the engine is built."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = [_parser_error(parser.get_error(index)) for index in range(parser.num_errors)]
        raise PlanError(format_parser_errors(model_path, errors))
    return parser


def apply_plan(trt, builder, network, config, plan: BuildPlan) -> None:
    """Set every builder option of the plan on a real IBuilderConfig."""
    for name in plan.builder_flags:
        config.set_flag(_enum(trt, "BuilderFlag", name))
    for name in plan.cleared_builder_flags:
        config.clear_flag(_enum(trt, "BuilderFlag", name))
    for pool, size in plan.memory_pool_limits.items():
        config.set_memory_pool_limit(_enum(trt, "MemoryPoolType", pool), size)
    config.builder_optimization_level = plan.builder_optimization_level
    config.hardware_compatibility_level = _enum(
        trt, "HardwareCompatibilityLevel", plan.hardware_compatibility_level
    )
    config.profiling_verbosity = _enum(trt, "ProfilingVerbosity", plan.profiling_verbosity)
    if plan.max_aux_streams is not None:
        config.max_aux_streams = plan.max_aux_streams
    if plan.default_device_type == "DLA":
        if plan.dla_core >= builder.num_DLA_cores:
            raise PlanError(
                f"the class asks for DLA core {plan.dla_core}; TensorRT finds {builder.num_DLA_cores} DLA cores here"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    network_inputs = {network.get_input(index).name for index in range(network.num_inputs)}
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for shape in plan.profiles:
            if shape.name not in network_inputs:
                raise PlanError(
                    f"profile input '{shape.name}' is not an input of the parsed network ({sorted(network_inputs)})"
                )
            profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
        if config.add_optimization_profile(profile) < 0:
            raise PlanError(f"TensorRT rejected the optimisation profile: {describe_plan(plan)}")


def _attach_timing_cache(config, path: Path):
    """Load the class's timing cache into the config (a fresh one when absent or refused)."""
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(data) if data else None
        if cache is not None and config.set_timing_cache(cache, False):
            return cache, True
    except Exception as exc:  # a damaged file
        log.warning("cannot read the timing cache %s: %s", path, exc)
    if data:
        log.warning(
            "TensorRT refused the timing cache %s (another device or version); starting a new one", path
        )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache, False


def _save_timing_cache(config, path: Path) -> None:
    """Write the grown cache back, merged with what a concurrent build may have written meanwhile."""
    cache = config.get_timing_cache()
    if path.is_file():
        try:
            other = config.create_timing_cache(path.read_bytes())
            if other is not None:
                cache.combine(other, False)
        except Exception as exc:  # a damaged or foreign file is simply replaced
            log.warning("cannot merge the timing cache %s: %s", path, exc)
    _atomic_write_bytes(path, cache.serialize())


def build_engine(trt, model_path: Path, plan: BuildPlan, class_name: str, cache_path: Path | None):
    """Parse, configure and build; returns (serialized engine, timing cache loaded?)."""
    logger = _collecting_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(_enum(trt, "NetworkDefinitionCreationFlag", name))
    network = builder.create_network(flags)
    parser = _parse(trt, network, logger, model_path)
    config = builder.create_builder_config()
    apply_plan(trt, builder, network, config, plan)
    cache, loaded = _attach_timing_cache(config, cache_path) if cache_path else (None, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        said = logger.errors()[-3:]
        raise PlanError(
            f"TensorRT could not build an engine for '{class_name}' (build_serialized_network returned None); tried: "
            f"{describe_plan(plan)}" + (f"; TensorRT said: {' | '.join(said)}" if said else "")
        )
    if cache_path and cache is not None:
        _save_timing_cache(config, cache_path)
    del parser  # only now: the network used its weights until the build finished
    return serialized, loaded


# -- CUDA through cuda-python -----------------------------------------------------------------
class CudaRuntime:
    """The few CUDA runtime calls the runner needs, with errors turned into exceptions."""

    def __init__(self) -> None:
        self.rt = _cudart()

    def call(self, name: str, *args):
        result = getattr(self.rt, name)(*args)
        error, values = result[0], result[1:]
        if error.value != 0:
            raise RuntimeError(f"CUDA {name} failed: {self.rt.cudaGetErrorName(error)[1].decode()}")
        return values[0] if len(values) == 1 else (values or None)

    def init_context(self) -> None:
        """Create the primary context now, so it is not counted as engine memory."""
        self.call("cudaSetDevice", 0)
        self.call("cudaFree", 0)

    def free_bytes(self) -> int:
        free, _total = self.call("cudaMemGetInfo")
        return int(free)

    def malloc(self, size: int) -> int:
        return int(self.call("cudaMalloc", max(size, 1)))

    def free(self, pointer: int) -> None:
        self.call("cudaFree", pointer)

    def pinned(self, size: int):
        """Page-locked host memory as a NumPy byte array (copies from it are truly asynchronous)."""
        import ctypes

        import numpy as np

        pointer = int(self.call("cudaMallocHost", max(size, 1)))
        return pointer, np.frombuffer((ctypes.c_ubyte * max(size, 1)).from_address(pointer), dtype=np.uint8)

    def free_pinned(self, pointer: int) -> None:
        self.call("cudaFreeHost", pointer)

    def stream(self):
        return self.call("cudaStreamCreate")

    def event(self):
        return self.call("cudaEventCreate")

    def copy_to_device(self, pointer: int, host_pointer: int, size: int, stream) -> None:
        self.call(
            "cudaMemcpyAsync",
            pointer,
            host_pointer,
            size,
            self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
            stream,
        )

    def copy_to_host(self, host_pointer: int, pointer: int, size: int, stream) -> None:
        self.call(
            "cudaMemcpyAsync",
            host_pointer,
            pointer,
            size,
            self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            stream,
        )

    def record(self, event, stream) -> None:
        self.call("cudaEventRecord", event, stream)

    def elapsed_ms(self, start, end) -> float:
        self.call("cudaEventSynchronize", end)
        return float(self.call("cudaEventElapsedTime", start, end))

    def synchronize(self, stream) -> None:
        self.call("cudaStreamSynchronize", stream)


@dataclass
class _Tensor:
    name: str
    is_input: bool
    dtype: Any  # numpy dtype
    shape: tuple[int, ...]  # -1 for dynamic axes
    low: tuple[int, ...] = ()  # profile 0 min / max, inputs only
    high: tuple[int, ...] = ()
    pointer: int = 0  # device buffer
    capacity: int = 0  # its size in bytes
    host_pointer: int = 0  # pinned staging buffer of the same size
    host: Any = None  # NumPy bytes over it

    def staging(self, shape: tuple[int, ...]):
        import numpy as np

        size = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        return self.host[:size].view(self.dtype).reshape(shape)


class TensorRTRunner(Runner):
    """One deserialized engine with one execution context, its own stream, and device plus pinned
    host buffers sized for the profile's largest shapes (allocated once, addresses set once)."""

    def __init__(self, engine: Artifact, class_name: str, here: Mapping[str, Any]):
        import numpy as np

        trt = _import_tensorrt()
        self._cuda = CudaRuntime()
        self._cuda.init_context()
        free_before = self._cuda.free_bytes()
        self._logger = _collecting_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        plan = engine.meta.get("build_plan", {})
        if plan.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True  # the embedded lean runtime is host code
        if plan.get("dla_core") is not None:
            self._runtime.DLA_core = int(plan["dla_core"])
        try:
            self._engine = self._runtime.deserialize_cuda_engine(engine.file.read_bytes())
        except Exception as exc:  # some versions raise instead of returning None
            self._logger.messages.append((1, str(exc)))
            self._engine = None
        if self._engine is None:
            raise RuntimeError(
                engine_mismatch_message(
                    class_name, engine.meta.get("device", {}), here, self._logger.errors()
                )
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(
                f"TensorRT could not create an execution context (GPU memory?): {self._logger.errors()[-1:]}"
            )
        self._tensors = self._describe(trt, np)
        self.input_names = [t.name for t in self._tensors if t.is_input]
        self._stream = self._cuda.stream()
        self._start, self._end = self._cuda.event(), self._cuda.event()
        buffers = self._allocate(np)
        v2 = hasattr(self._engine, "device_memory_size_v2")  # 10.1+; 11.x removed device_memory_size
        activations = int(self._engine.device_memory_size_v2 if v2 else self._engine.device_memory_size)
        self._memory_mb = device_memory_mb(free_before - self._cuda.free_bytes(), activations, buffers)

    def _describe(self, trt, np) -> list[_Tensor]:
        tensors = []
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            tensor = _Tensor(
                name,
                is_input,
                np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))),
                tuple(self._engine.get_tensor_shape(name)),
            )
            if is_input:
                if -1 in tensor.shape:
                    low, _opt, high = self._engine.get_tensor_profile_shape(name, 0)
                    tensor.low, tensor.high = tuple(low), tuple(high)
                else:
                    tensor.low = tensor.high = tensor.shape
            tensors.append(tensor)
        return tensors

    def _allocate(self, np) -> int:
        """Device and pinned host buffers for the largest shapes; returns the device bytes."""
        for tensor in self._tensors:
            if tensor.is_input:
                self._context.set_input_shape(tensor.name, tensor.high)
        total = 0
        for tensor in self._tensors:
            shape = tensor.high if tensor.is_input else tuple(self._context.get_tensor_shape(tensor.name))
            if any(dim < 0 for dim in shape):
                raise RuntimeError(
                    f"output '{tensor.name}' has a data-dependent shape; this runner does not support it"
                )
            tensor.capacity = int(np.prod(shape, dtype=np.int64)) * tensor.dtype.itemsize
            tensor.pointer = self._cuda.malloc(tensor.capacity)
            tensor.host_pointer, tensor.host = self._cuda.pinned(tensor.capacity)
            self._context.set_tensor_address(tensor.name, tensor.pointer)
            total += tensor.capacity
        return total

    @property
    def _fixed_batch(self) -> int | None:
        first = next(t for t in self._tensors if t.is_input)
        return first.shape[0] if first.shape and first.shape[0] > 0 else None

    def _arrays(self, feeds) -> dict[str, np.ndarray]:
        import numpy as np

        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise ValueError(f"missing inputs {missing}; the engine takes {self.input_names}")
        return {t.name: np.asarray(feeds[t.name], dtype=t.dtype) for t in self._tensors if t.is_input}

    def _stage(self, arrays) -> None:
        """Set the input shapes and copy the inputs into the pinned buffers (host work only)."""
        import numpy as np

        for tensor in self._tensors:
            if tensor.is_input:
                shape = arrays[tensor.name].shape
                problem = shape_problem(tensor.name, shape, tensor.low, tensor.high)
                if problem or not self._context.set_input_shape(tensor.name, shape):
                    raise ValueError(problem or f"TensorRT refused shape {list(shape)} for '{tensor.name}'")
                np.copyto(tensor.staging(shape), arrays[tensor.name])

    def _launch(self) -> None:
        """Copies in, execute_async_v3, copies out: all queued on the runner's stream."""
        for tensor in self._tensors:
            if tensor.is_input:
                size = tensor.staging(tuple(self._context.get_tensor_shape(tensor.name))).nbytes
                self._cuda.copy_to_device(tensor.pointer, tensor.host_pointer, size, self._stream)
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"execute_async_v3 failed: {self._logger.errors()[-1:]}")
        for tensor in self._tensors:
            if not tensor.is_input:
                size = tensor.staging(tuple(self._context.get_tensor_shape(tensor.name))).nbytes
                self._cuda.copy_to_host(tensor.host_pointer, tensor.pointer, size, self._stream)

    def _collect(self) -> list[np.ndarray]:
        return [
            tensor.staging(tuple(self._context.get_tensor_shape(tensor.name))).copy()
            for tensor in self._tensors
            if not tensor.is_input
        ]

    def _run(self, arrays, timed: bool) -> tuple[list[np.ndarray], float]:
        """Outputs, and the CUDA-event milliseconds of copies + execution summed over the slices
        (one slice unless the engine has a fixed batch smaller than the feeds)."""
        import numpy as np

        total = len(next(iter(arrays.values())))
        fixed = self._fixed_batch
        slices = [(0, total)] if fixed is None or total == fixed else batch_chunks(total, fixed)
        parts, elapsed = [], 0.0
        for start, stop in slices:
            self._stage({name: value[start:stop] for name, value in arrays.items()})
            if timed:
                self._cuda.record(self._start, self._stream)
            self._launch()
            if timed:
                self._cuda.record(self._end, self._stream)
            self._cuda.synchronize(self._stream)
            if timed:
                elapsed += self._cuda.elapsed_ms(self._start, self._end)
            parts.append(self._collect())
        outputs = (
            parts[0] if len(parts) == 1 else [np.concatenate(pieces) for pieces in zip(*parts, strict=True)]
        )
        return outputs, elapsed

    def run(self, feeds):
        return self._run(self._arrays(feeds), timed=False)[0]

    def timed_run(self, feeds) -> float:
        """Milliseconds between CUDA events around the input copies, the execution and the output
        copies (from pinned memory): what an application waits for, without host-side conversion."""
        return self._run(self._arrays(feeds), timed=True)[1]

    def device_memory_mb(self) -> float:
        return self._memory_mb

    def close(self) -> None:
        for tensor in getattr(self, "_tensors", []):
            if tensor.pointer:
                self._cuda.free(tensor.pointer)
                tensor.pointer = 0
            if tensor.host_pointer:
                tensor.host = None
                self._cuda.free_pinned(tensor.host_pointer)
                tensor.host_pointer = 0
        for name in ("_start", "_end"):
            if getattr(self, name, None) is not None:
                self._cuda.call("cudaEventDestroy", getattr(self, name))
                setattr(self, name, None)
        if getattr(self, "_stream", None) is not None:
            self._cuda.call("cudaStreamDestroy", self._stream)
            self._stream = None
        self._context = self._engine = (
            None  # the context goes before the engine, the engine before the runtime
        )


# -- the runtime ---------------------------------------------------------------------------------
@RUNTIMES.register("tensorrt")
class TensorRTRuntime(Runtime):
    Settings = TensorRTSettings
    distribution = "tensorrt"
    library = "tensorrt"
    engine_file = ENGINE_FILE
    needs_symmetric_int8_activations = True  # explicit quantization takes signed int8 only

    def version(self) -> str:
        """From the module itself: pip installs name it tensorrt-cuXX, JetPack installs it by apt."""
        version, _ = tensorrt_probe()
        return version or "not-installed"

    def availability(self, device_class) -> Availability:
        trt_version, trt_problem = tensorrt_probe()
        facts, gpu_problem = detect_gpu() if trt_version else (None, "")
        return availability_for(
            device_class, trt_version, trt_problem, facts, gpu_problem, platform.machine()
        )

    def device_identity(self, device_class) -> dict[str, Any]:
        facts, problem = detect_gpu()
        if facts is None:
            raise TargetError(device_class.name, problem)
        l4t = parse_tegra_release(_read("/etc/nv_tegra_release"))
        return identity_from(self.version(), tensorrt_cuda_line(), facts, l4t, platform.machine())

    def build(self, model: Artifact, device_class, workdir: Path) -> dict[str, Any]:
        trt = _import_tensorrt()
        identity = self.device_identity(device_class)
        try:
            plan = make_build_plan(
                device_class, trt.__version__, onnx_input_shapes(model), identity, model.precision
            )
            cache_path = (
                timing_cache_dir(workdir) / plan.timing_cache_file if plan.timing_cache_file else None
            )
            serialized, cache_loaded = build_engine(trt, model.file, plan, device_class.name, cache_path)
        except PlanError as exc:
            raise TargetError(device_class.name, str(exc)) from exc
        (workdir / ENGINE_FILE).write_bytes(serialized)
        write_artifact_meta(
            workdir,
            ArtifactKind.ENGINE,
            ENGINE_FILE,
            runtime=self.name,
            runtime_version=trt.__version__,
            device_class=device_class.name,
            precision=model.precision,
            device=identity,
            build_plan=plan.to_dict(),
            inputs=model.meta.get("inputs"),
            outputs=model.meta.get("outputs"),
        )
        for note in plan.notes:
            log.warning("%s: %s", device_class.name, note)
        return {
            "plan": plan.to_dict(),
            "device": identity,
            "timing_cache": {"path": str(cache_path), "loaded": cache_loaded} if cache_path else None,
            "engine_mb": (workdir / ENGINE_FILE).stat().st_size / 2**20,
        }

    def open(self, engine: Artifact, device_class) -> Runner:
        return TensorRTRunner(engine, device_class.name, self.device_identity(device_class))
