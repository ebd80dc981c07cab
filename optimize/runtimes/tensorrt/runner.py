"""The engine session for evaluation: deserialize a plan, run it through execute_async_v3 with
device and pinned host buffers allocated once, and time it with CUDA events.

The messages and arithmetic it relies on (why an engine from elsewhere is refused, fixed-batch
slicing, profile bounds, memory held) are plain functions, tested without TensorRT or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimize.runtimes.base import Runner
from optimize.runtimes.tensorrt.cuda import CudaRuntime
from optimize.runtimes.tensorrt.host import IDENTITY_FIELDS
from optimize.runtimes.tensorrt.logger import collecting_logger
from optimize.runtimes.tensorrt.probe import import_tensorrt

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from optimize.artifacts import Artifact


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

        trt = import_tensorrt()
        self._cuda = CudaRuntime()
        self._cuda.init_context()
        free_before = self._cuda.free_bytes()
        self._logger = collecting_logger(trt)
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
