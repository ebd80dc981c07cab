"""What `optimize targets` says about this host's TensorRT stack: the platform, driver, CUDA,
cuda-python and TensorRT it found, and, when they do not fit together, exactly what to install.

`report_lines` is pure (tested on a table of hosts); `host_report` gathers the facts."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass

from optimize.runtimes.tensorrt.install import (
    InstallPlan,
    fit_problems,
    install_plan,
    parse_driver_version,
    read_text,
)
from optimize.runtimes.tensorrt.probe import detect_gpu, l4t_release, tensorrt_cuda_line, tensorrt_probe


@dataclass(frozen=True)
class Found:
    """The TensorRT stack of a host as probed (None: absent)."""

    cuda_python: str | None
    tensorrt: str | None
    tensorrt_cuda: str | None
    gpu: str | None  # "NVIDIA A100 (8.0), driver supports CUDA 12.8", or why none is usable


def report_lines(plan: InstallPlan, found: Found) -> list[str]:
    tensorrt = (
        f"TensorRT {found.tensorrt} ({found.tensorrt_cuda})" if found.tensorrt else "TensorRT not installed"
    )
    cuda_python = f"cuda-python {found.cuda_python}" if found.cuda_python else "cuda-python not installed"
    lines = [f"TensorRT host: {plan.platform}; {cuda_python}; {tensorrt}; GPU: {found.gpu or 'none'}"]
    if plan.problem:
        return lines + [f"  TensorRT cannot run here: {plan.problem}"]
    problems = fit_problems(plan, found.cuda_python, found.tensorrt, found.tensorrt_cuda)
    line = f"CUDA {plan.cuda_major} line, TensorRT from {plan.tensorrt_from}"
    if not problems:
        return lines + [f"  fits: {line}"]
    lines += [f"  does not fit ({line}): {'; '.join(problems)}", f"  install: {plan.command}"]
    return lines + [f"  note: {note}" for note in plan.notes]


def _installed(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def host_report() -> list[str]:
    """The report for this host."""
    plan = install_plan(
        platform.system(),
        platform.machine(),
        parse_driver_version(read_text("/proc/driver/nvidia/version")),
        l4t_release(),
    )
    facts, gpu_problem = detect_gpu()
    gpu = (
        f"{facts.name} ({facts.compute_capability}), driver supports CUDA {facts.cuda_driver}"
        if facts
        else gpu_problem
    )
    version, _ = tensorrt_probe()
    found = Found(
        _installed("cuda-bindings", "cuda-python"),
        version,
        tensorrt_cuda_line() if version else None,
        gpu,
    )
    return report_lines(plan, found)
