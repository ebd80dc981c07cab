"""Versions of the libraries a result depends on, and the identity of this host."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys


@functools.cache
def library_version(name: str) -> str:
    """Installed version without importing the library (importing torch costs seconds)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not-installed"


def library_versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {name: library_version(name) for name in names}


def tracked_libraries() -> list[str]:
    """Every library a result can depend on, as the registered members declare them (stages,
    quantizers, runtimes, model and data sources) plus what measures every model."""
    from optimize.measure import LIBRARIES as MEASURED_WITH
    from optimize.registries import DATA_SOURCES, MODEL_SOURCES, QUANTIZERS, RUNTIMES, STAGES

    names = {"numpy", *MEASURED_WITH}
    for registry in (STAGES, QUANTIZERS, MODEL_SOURCES, DATA_SOURCES):
        names.update(library for _, member in registry for library in member.libraries)
    names.update(runtime.distribution for _, runtime in RUNTIMES)
    return sorted(names)


def all_library_versions() -> dict[str, str]:
    """The installed versions of the tracked libraries (for the manifest and MLflow tags)."""
    versions = {"python": platform.python_version()}
    versions.update(library_versions(tracked_libraries()))
    return {k: v for k, v in versions.items() if v != "not-installed"}


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_identity() -> dict[str, str]:
    """What a latency number depends on besides the model: CPU, core count, OS, arch."""
    return {
        "hostname": platform.node(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_count": str(os.cpu_count() or 0),
        "python": sys.version.split()[0],
    }


def host_hardware() -> dict[str, str]:
    """What timings depend on besides the engine: the host without its name (identical CI runners
    are interchangeable)."""
    return {k: v for k, v in host_identity().items() if k != "hostname"}
