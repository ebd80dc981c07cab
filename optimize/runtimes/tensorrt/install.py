"""Which TensorRT and cuda-python a host needs, from its platform, NVIDIA driver and JetPack
release: a pure table, so every platform's answer is tested on hosts that have none of them.

cuda-python's runtime bindings link a CUDA runtime of their own major line, and a CUDA 13 runtime
needs driver r580+: with the wrong major every call answers cudaErrorInsufficientDriver and every
TensorRT class looks unavailable. So the cuda-python major follows the driver (x86 and Arm
servers) or the JetPack release (Jetson, whose TensorRT comes with JetPack, never from PyPI).

Only the standard library is imported: `make setup-jetson` runs this file as a script
(`python optimize/runtimes/tensorrt/install.py`) before anything else is installed.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

CUDA13_DRIVER = 580  # CUDA 13.x needs driver r580 or newer (CUDA release notes)
CUDA12_DRIVER = 525  # CUDA 12.x runs on r525+ through minor version compatibility


@dataclass(frozen=True)
class InstallPlan:
    """What to install on one host; `problem` says why nothing would work here."""

    platform: str  # what was recognised, in words
    cuda_major: int | None = None  # the CUDA line of cuda-python (and of TensorRT's wheels)
    extra: str | None = None  # optimize's extra
    constraints: str | None = None  # the pins of that line, relative to the repository
    tensorrt_from: str = ""  # where TensorRT comes from
    problem: str | None = None
    notes: tuple[str, ...] = field(default=())
    with_build: bool = False  # the line's pins agree with constraints.txt: one environment for all

    @property
    def command(self) -> str | None:
        if self.problem:
            return None
        if self.extra == "jetson":
            return "make setup-jetson"
        if self.with_build:
            return f"pip install -c constraints.txt -c {self.constraints} -e '.[build,dev,{self.extra}]'"
        return f"pip install -c {self.constraints} -e '.[{self.extra}]'"


def parse_tegra_release(text: str) -> str | None:
    """The L4T release in /etc/nv_tegra_release ('# R36 (release), REVISION: 4.3, ...' -> '36.4.3')."""
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{found.group(1)}.{found.group(2)}" if found else None


def parse_driver_version(text: str) -> str | None:
    """The NVIDIA kernel module version in /proc/driver/nvidia/version."""
    found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return found.group(1) if found else None


def read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def driver_major(driver: str | None) -> int | None:
    """'550.54.15' -> 550."""
    found = re.match(r"(\d+)", driver or "")
    return int(found.group(1)) if found else None


def jetpack_of(l4t: str) -> str | None:
    """The JetPack release of an L4T release (NVIDIA's JetPack archive); None when unknown."""
    parts = tuple(int(p) for p in re.findall(r"\d+", l4t)[:2])
    if parts[:1] == (36,) and parts[1:] and parts[1] >= 4:
        return "6.1+"  # 36.4: JetPack 6.1 and 6.2; later 36.x releases keep TensorRT 10.x and CUDA 12
    table = {(35,): "5", (36, 2): "6.0 DP", (36, 3): "6.0", (38,): "7"}
    return table.get(parts) or table.get(parts[:1])


def _jetson(l4t: str) -> InstallPlan:
    jetpack = jetpack_of(l4t)
    platform = f"Jetson, L4T {l4t}" + (f" (JetPack {jetpack})" if jetpack else "")
    major = int(re.findall(r"\d+", l4t)[0])
    if jetpack == "6.1+":
        return InstallPlan(
            platform,
            cuda_major=12,
            extra="jetson",
            constraints="constraints/jetson-jp6.txt",
            tensorrt_from="JetPack (TensorRT 10.3, CUDA 12.6; apt package python3-libnvinfer)",
        )
    if major == 38:
        return InstallPlan(
            platform,
            cuda_major=13,
            extra="jetson",
            constraints="constraints/jetson-jp7.txt",
            tensorrt_from="JetPack (CUDA 13; apt package python3-libnvinfer)",
        )
    if major == 35 or jetpack in ("6.0", "6.0 DP"):
        shipped = "TensorRT 8.5 and CUDA 11.4" if major == 35 else "TensorRT 8.6 and CUDA 12.2"
        return InstallPlan(
            platform,
            problem=f"JetPack {jetpack} ships {shipped}; this runtime follows the TensorRT 10.x API: "
            "flash JetPack 6.1 or later (TensorRT 10.3)",
        )
    return InstallPlan(
        platform,
        problem=f"L4T {l4t} is no JetPack release this runtime knows (JetPack 6.1+ is L4T 36.4+, 7 is 38)",
    )


def install_plan(system: str, machine: str, driver: str | None, l4t: str | None) -> InstallPlan:
    """The TensorRT install for a host: `system`/`machine` as platform.system()/machine(), the
    NVIDIA kernel module version (None: no driver loaded) and the L4T release (None: not a Jetson)."""
    if l4t:
        return _jetson(l4t)
    if system != "Linux" or machine not in ("x86_64", "aarch64"):
        return InstallPlan(
            f"{system} {machine}",
            problem="TensorRT classes build on Linux x86_64 or aarch64 hosts with an NVIDIA GPU, or on a Jetson",
        )
    major = driver_major(driver)
    platform = f"{machine} host, NVIDIA driver {driver}" if driver else f"{machine} host"
    if major is None:
        return InstallPlan(
            platform,
            problem=f"no NVIDIA driver is loaded: install driver r{CUDA13_DRIVER}+ (CUDA 13, the default line) "
            f"or r{CUDA12_DRIVER}+ (CUDA 12)",
        )
    if major >= CUDA13_DRIVER:
        return InstallPlan(
            platform,
            cuda_major=13,
            extra="tensorrt",
            constraints="constraints/tensorrt-cu13.txt",
            tensorrt_from="PyPI (tensorrt-cu13 wheels)",
            with_build=True,
        )
    if major >= CUDA12_DRIVER:
        return InstallPlan(
            platform,
            cuda_major=12,
            extra="tensorrt-cu12",
            constraints="constraints/tensorrt-cu12.txt",
            tensorrt_from="PyPI (tensorrt-cu12 wheels)",
            notes=(
                f"torch from PyPI (the build extra) is built for CUDA 13 and needs driver r{CUDA13_DRIVER}+: "
                "install the CUDA 12 line in an environment without it (optimize rebuild builds and evaluates "
                f"engines there), or upgrade the driver to r{CUDA13_DRIVER}+ and use the default line",
            ),
        )
    return InstallPlan(
        platform,
        problem=f"driver {driver} is older than CUDA 12 needs (r{CUDA12_DRIVER}+): upgrade it, to r{CUDA13_DRIVER}+ "
        "for the default CUDA 13 line",
    )


def fit_problems(
    plan: InstallPlan, cuda_python: str | None, tensorrt: str | None, tensorrt_cuda: str | None
) -> list[str]:
    """What is installed that does not fit the plan: the cuda-python major, TensorRT missing, or
    TensorRT wheels of the wrong CUDA line (or any PyPI wheel on a Jetson)."""
    if plan.problem:
        return [plan.problem]
    problems = []
    if cuda_python is None:
        problems.append(f"cuda-python is not installed (needs {plan.cuda_major}.x)")
    elif driver_major(cuda_python) != plan.cuda_major:
        problems.append(
            f"cuda-python {cuda_python} is installed; this host needs {plan.cuda_major}.x "
            f"(its CUDA {driver_major(cuda_python)} runtime does not run here)"
        )
    if tensorrt is None:
        problems.append(f"TensorRT is not installed (from {plan.tensorrt_from})")
    elif plan.extra == "jetson" and tensorrt_cuda != "system":
        problems.append(
            f"TensorRT {tensorrt} comes from a PyPI wheel ({tensorrt_cuda}); on a Jetson use JetPack's "
            "(pip uninstall it; the environment must see system site-packages)"
        )
    elif plan.extra != "jetson" and tensorrt_cuda not in (f"cu{plan.cuda_major}", "system"):
        problems.append(
            f"TensorRT {tensorrt} is built for {tensorrt_cuda}; this host needs cu{plan.cuda_major}"
        )
    return problems


def _this_host() -> InstallPlan:
    import platform

    return install_plan(
        platform.system(),
        platform.machine(),
        parse_driver_version(read_text("/proc/driver/nvidia/version")),
        parse_tegra_release(read_text("/etc/nv_tegra_release")),
    )


if __name__ == "__main__":  # `make setup-jetson`: print this host's constraints file, or why none
    plan = _this_host()
    if plan.problem or plan.extra != "jetson":
        sys.stderr.write(
            f"{plan.platform}: {plan.problem or 'not a Jetson; install with: ' + str(plan.command)}\n"
        )
        sys.exit(2)
    print(plan.constraints)
