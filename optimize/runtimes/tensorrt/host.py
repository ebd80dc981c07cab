"""Pure judgements on the facts the probes found: can this host build and run a class's engines,
which identity keys those engines, and where their timing caches live.

Pure so that every reason a class is refused, and every field of the engine key, is tested on
hosts without TensorRT or a GPU; the facts come in as plain values (`probe.GpuFacts`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.hashing import hash_value
from optimize.runtimes.base import Availability, version_matches

if TYPE_CHECKING:
    from collections.abc import Mapping

    from optimize.runtimes.tensorrt.probe import GpuFacts
    from optimize.runtimes.tensorrt.settings import TensorRTSettings

TIMING_CACHE_ENV = "OPTIMIZE_TENSORRT_TIMING_CACHE_DIR"
TIMING_CACHE_FOLDER = "tensorrt-timing-cache"


def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26); trailing non-numeric parts are ignored."""
    numbers = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


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
    if settings.hardware_compatibility == "ampere_plus" and facts.integrated:
        return (
            f"hardware_compatibility ampere_plus is not supported on integrated GPUs (TensorRT's engine "
            f"compatibility docs); this host has an integrated {gpu}: use 'none' and build on the device"
        )
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


def _describe(identity: Mapping[str, Any]) -> str:
    text = (
        f"TensorRT {identity.get('version', '?')} on {identity.get('gpu', '?')} ({identity.get('sm_count', '?')} SMs, "
        f"compute capability {identity.get('compute_capability', '?')}"
    )
    return text + (f", L4T {identity['l4t']})" if identity.get("l4t") else ")")


def identity_mismatch(
    built: Mapping[str, Any], here: Mapping[str, Any], plan: Mapping[str, Any] | None = None
) -> str | None:
    """Why an engine built on `built` must not run on `here`, in one line, or None. TensorRT
    itself may load an engine from another GPU of the same compute capability with only a warning
    (AGX Orin and Orin Nano are both 8.7), so the identities are compared first: TensorRT version,
    GPU name, SM count, compute capability and JetPack (L4T) release, relaxed only as far as the
    plan's compatibility modes promise. Fields either side lacks are not compared."""
    plan = plan or {}
    level = plan.get("hardware_compatibility_level", "NONE")
    ignored: set[str] = set()
    if level in ("AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"):
        ignored |= {"gpu", "sm_count"}
    if level == "AMPERE_PLUS" and parse_version(str(here.get("compute_capability", "0"))) >= (8, 0):
        ignored.add("compute_capability")
    if plan.get("version_compatible"):
        built_major = parse_version(str(built.get("version", "")))[:1]
        if built_major == parse_version(str(here.get("version", "")))[:1] and parse_version(
            str(here.get("version", ""))
        ) >= parse_version(str(built.get("version", ""))):
            ignored.add("version")
    differing = [
        f"{name} {built[name]!r} vs {here[name]!r}"
        for name in ("version", "gpu", "sm_count", "compute_capability", "l4t")
        if name not in ignored and name in built and name in here and built[name] != here[name]
    ]
    if not differing:
        return None
    return (
        f"the engine was built with {_describe(built)}, this host has {_describe(here)} (differs: "
        f"{', '.join(differing)}): rebuild it on this host"
    )
