"""Host probes: is `tensorrt` importable (and which version, for which CUDA line), which GPU
and CUDA does cuda-python see, which L4T release is this Jetson, and which inputs has the ONNX file.

`tensorrt`, cuda-python and onnx are imported inside functions only, so importing
`optimize.runtimes` never needs them. The GPU is found through cuda-python without TensorRT, so a
host with a GPU but the wrong TensorRT still says which GPU it has. The parsers of what the probes
read are plain functions, tested without either library.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optimize.runtimes.tensorrt.cuda import load_cudart
from optimize.runtimes.tensorrt.install import parse_driver_version, parse_tegra_release, read_text
from optimize.runtimes.tensorrt.plan import InputShape

if TYPE_CHECKING:
    from optimize.artifacts import Artifact

INSTALL_HINT = "`optimize targets` says what this host needs; on a Jetson: make setup-jetson"


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


def cuda_version_text(encoded: int) -> str:
    """CUDA's 1000*major + 10*minor encoding (12060) as '12.6'."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}" if encoded else "none"


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


def import_tensorrt():
    """The `tensorrt` module, imported when a build or a run needs it, never at import time."""
    import tensorrt

    return tensorrt


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


def l4t_release() -> str | None:
    """The Jetson L4T release of this host, None elsewhere."""
    return parse_tegra_release(read_text("/etc/nv_tegra_release"))


@functools.cache
def detect_gpu() -> tuple[GpuFacts | None, str]:
    """Facts about CUDA device 0, found through cuda-python without TensorRT; (None, why) when
    there is none. One call per process: the answer does not change while it runs."""
    try:
        cudart = load_cudart()
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
        driver=parse_driver_version(read_text("/proc/driver/nvidia/version")) or "",
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
