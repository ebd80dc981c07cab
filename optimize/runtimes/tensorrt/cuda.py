"""CUDA through cuda-python (`cuda.bindings.runtime`): device buffers, pinned host memory,
streams and events for the runner, and the runtime module the GPU probe asks.

cuda-python, as NVIDIA's own TensorRT samples use since 10.13: it works on Jetson, where PyPI's
torch has no CUDA, and keeps torch out of the evaluation worker. Imported inside functions only.
"""

from __future__ import annotations


def load_cudart():
    """cuda-python's runtime module (cuda.bindings.runtime; `cuda.cudart` before cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


class CudaRuntime:
    """The few CUDA runtime calls the runner needs, with errors turned into exceptions."""

    def __init__(self) -> None:
        self.rt = load_cudart()

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
