"""Versions of the libraries a result depends on, and the identity of this host."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys

TRACKED_LIBRARIES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "nncf",
    "openvino",
    "torch-pruning",
    "transformers",
    "scikit-learn",
    "numpy",
    "tensorrt",
)


@functools.cache
def library_version(name: str) -> str:
    """Installed version without importing the library (importing torch costs seconds)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not-installed"


def library_versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {name: library_version(name) for name in names}


def all_library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    versions.update(library_versions(TRACKED_LIBRARIES))
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
