"""The engine session for evaluation: deserialize a plan, run it through execute_async_v3 with
device and pinned host buffers allocated once, and time it with CUDA events.

The messages and arithmetic it relies on (why an engine from elsewhere is refused, fixed-batch
slicing, profile bounds, memory held, output order) are plain functions, tested without TensorRT
or a GPU; the TensorRT and CUDA calls are exercised against a recording stand-in in the tests.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimize.runtimes.base import Runner
from optimize.runtimes.tensorrt.cuda import CudaRuntime
from optimize.runtimes.tensorrt.dtypes import tensor_type
from optimize.runtimes.tensorrt.host import IDENTITY_FIELDS, identity_mismatch
from optimize.runtimes.tensorrt.logger import collecting, shared_logger
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
    name: str, shape: tuple[int, ...], low: tuple[int, ...], high: tuple[int, ...], what: str = "shape"
) -> str | None:
    """Why a feed's shape (or a shape tensor's values) is outside the engine's optimisation
    profile, or None."""
    if len(shape) != len(low) or any(
        not lo <= dim <= hi for dim, lo, hi in zip(shape, low, high, strict=True)
    ):
        where = "the device class's batch profile and shape_ranges" if what == "shape" else "its profile"
        return f"input '{name}' has {what} {list(shape)}; the engine accepts {list(low)} to {list(high)} ({where})"
    return None


def device_memory_mb(measured_bytes: int, activation_bytes: int, buffer_bytes: int) -> float:
    """GPU memory the runner holds: the measured drop in free memory when the engine was loaded
    (weights + activations + I/O buffers), never less than the activations and buffers we know of
    (free memory is shared with other processes, and on Jetson with the CPU)."""
    return max(measured_bytes, activation_bytes + buffer_bytes) / 2**20


def output_order(engine_outputs: list[str], recorded: list[Any] | None) -> list[str]:
    """The engine's outputs in the order the model's metadata records them (what `run` returns),
    engine order where nothing is recorded; a recorded name the engine lacks is an error."""
    names = [item.get("name") if isinstance(item, dict) else str(item) for item in recorded or []]
    if not names:
        return list(engine_outputs)
    missing = [name for name in names if name not in engine_outputs]
    if missing:
        raise RuntimeError(f"the engine has no output {missing}; its outputs are {engine_outputs}")
    return names + [name for name in engine_outputs if name not in names]


@dataclass
class _Tensor:
    name: str
    is_input: bool
    kind: Any  # dtypes.TensorType: host dtype, storage and conversion
    shape: tuple[int, ...]  # -1 for dynamic axes
    on_host: bool = False  # a shape tensor: TensorRT reads its values from host memory
    low: tuple[int, ...] = ()  # profile 0 min / max: shapes, or values for a shape tensor
    high: tuple[int, ...] = ()
    pointer: int = 0  # device buffer
    capacity: int = 0  # its size in bytes
    host_pointer: int = 0  # pinned staging buffer of the same size
    host: Any = None  # NumPy bytes over it

    def store(self, values) -> int:
        """Write values into the pinned buffer in TensorRT's encoding; returns the bytes written."""
        units = self.kind.to_storage(values).view("uint8")
        self.host[: units.nbytes] = units
        return units.nbytes

    def read(self, shape: tuple[int, ...]):
        size = self.kind.nbytes(shape)
        return self.kind.from_storage(self.host[:size].view(self.kind.storage), shape).copy()


class TensorRTRunner(Runner):
    """One deserialized engine with one execution context, its own stream, and device plus pinned
    host buffers sized for the profile's largest shapes (allocated once, addresses set once).
    A failure anywhere in start-up frees what was allocated before it is raised."""

    def __init__(self, engine: Artifact, class_name: str, here: Mapping[str, Any]):
        trt = self._trt = import_tensorrt()
        plan = engine.meta.get("build_plan", {}) or {}
        built = engine.meta.get("device", {}) or {}
        problem = identity_mismatch(built, here, plan)
        if problem:
            raise RuntimeError(
                f"TensorRT engine of '{class_name}': {problem} (optimize run RECIPE --target {class_name})"
            )
        self._cuda = CudaRuntime()
        self._tensors: list[_Tensor] = []
        self._stream = self._start = self._end = None
        self._context = self._engine = None
        try:
            self._open(trt, engine, class_name, here, plan)
        except BaseException:
            with contextlib.suppress(Exception):  # the start-up error is the one to report
                self.close()
            raise

    def _open(self, trt, engine: Artifact, class_name: str, here, plan) -> None:
        self._cuda.init_context()
        free_before = self._cuda.free_bytes()
        with collecting(trt) as said:
            self._runtime = trt.Runtime(shared_logger(trt))
            if plan.get("version_compatible"):
                self._runtime.engine_host_code_allowed = True  # the embedded lean runtime is host code
            if plan.get("dla_core") is not None:
                self._runtime.DLA_core = int(plan["dla_core"])
            try:
                self._engine = self._runtime.deserialize_cuda_engine(engine.file.read_bytes())
            except Exception as exc:  # some versions raise instead of returning None
                said.lines.append((1, str(exc)))
                self._engine = None
            if self._engine is None:
                raise RuntimeError(
                    engine_mismatch_message(class_name, engine.meta.get("device", {}), here, said.errors())
                )
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise RuntimeError(
                    f"TensorRT could not create an execution context (GPU memory?): {said.errors()[-1:]}"
                )
        self._tensors = self._describe(trt)
        self.input_names = [t.name for t in self._tensors if t.is_input]
        outputs = [t.name for t in self._tensors if not t.is_input]
        self.output_names = output_order(outputs, engine.meta.get("outputs"))
        self._stream = self._cuda.stream()
        self._start = self._cuda.event()
        self._end = self._cuda.event()
        buffers = self._allocate()
        v2 = hasattr(self._engine, "device_memory_size_v2")  # 10.1+; 11.x removed device_memory_size
        activations = int(self._engine.device_memory_size_v2 if v2 else self._engine.device_memory_size)
        self._memory_mb = device_memory_mb(free_before - self._cuda.free_bytes(), activations, buffers)

    def _describe(self, trt) -> list[_Tensor]:
        tensors = []
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            on_host = self._engine.get_tensor_location(name) == trt.TensorLocation.HOST
            if on_host and not is_input:
                raise RuntimeError(
                    f"output '{name}' is a shape tensor (computed on the host); this runner does not support it"
                )
            tensor = _Tensor(
                name,
                is_input,
                tensor_type(self._engine.get_tensor_dtype(name)),
                tuple(self._engine.get_tensor_shape(name)),
                on_host,
            )
            if on_host:  # a shape tensor input: its profile bounds its values, not its shape
                low, _opt, high = self._engine.get_tensor_profile_values(0, name)
                tensor.low, tensor.high = tuple(low), tuple(high)
            elif is_input and -1 in tensor.shape:
                low, _opt, high = self._engine.get_tensor_profile_shape(name, 0)
                tensor.low, tensor.high = tuple(low), tuple(high)
            elif is_input:
                tensor.low = tensor.high = tensor.shape
            tensors.append(tensor)
        return tensors

    def _allocate(self) -> int:
        """Device and pinned host buffers for the largest shapes (a shape tensor: host only, where
        TensorRT reads it); returns the device bytes. Each pointer is kept as soon as it exists,
        so close() frees it whatever fails next."""
        for tensor in self._tensors:
            if tensor.is_input and tensor.on_host:
                tensor.capacity = tensor.kind.nbytes(tensor.shape)
                tensor.host_pointer, tensor.host = self._cuda.pinned(tensor.capacity)
                tensor.store(tensor.high)  # the largest values, so the outputs get their largest shapes
                self._context.set_tensor_address(tensor.name, tensor.host_pointer)
        for tensor in self._tensors:
            if tensor.is_input and not tensor.on_host:
                self._context.set_input_shape(tensor.name, tensor.high)
        total = 0
        for tensor in self._tensors:
            if tensor.on_host:
                continue
            shape = tensor.high if tensor.is_input else tuple(self._context.get_tensor_shape(tensor.name))
            if any(dim < 0 for dim in shape):
                raise RuntimeError(
                    f"output '{tensor.name}' has a data-dependent shape; this runner does not support it"
                )
            tensor.capacity = tensor.kind.nbytes(shape)
            tensor.pointer = self._cuda.malloc(tensor.capacity)
            tensor.host_pointer, tensor.host = self._cuda.pinned(tensor.capacity)
            if not self._context.set_tensor_address(tensor.name, tensor.pointer):
                raise RuntimeError(f"TensorRT refused the address of tensor '{tensor.name}'")
            total += tensor.capacity
        return total

    @property
    def _fixed_batch(self) -> int | None:
        first = next((t for t in self._tensors if t.is_input and not t.on_host), None)
        return first.shape[0] if first and first.shape and first.shape[0] > 0 else None

    def _arrays(self, feeds) -> dict[str, np.ndarray]:
        import numpy as np

        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise ValueError(f"missing inputs {missing}; the engine takes {self.input_names}")
        return {t.name: np.asarray(feeds[t.name], dtype=t.kind.host) for t in self._tensors if t.is_input}

    def _stage(self, arrays) -> None:
        """Set the input shapes (and shape tensors' values) and write the inputs into the pinned
        buffers in TensorRT's encoding (host work only)."""
        for tensor in self._tensors:
            if not tensor.is_input:
                continue
            value = arrays[tensor.name]
            if tensor.on_host:
                values = tuple(int(v) for v in value.reshape(-1))
                problem = shape_problem(tensor.name, values, tensor.low, tensor.high, what="values")
                if problem or value.shape != tensor.shape:
                    raise ValueError(
                        problem or f"shape tensor '{tensor.name}' takes shape {list(tensor.shape)}"
                    )
            else:
                problem = shape_problem(tensor.name, value.shape, tensor.low, tensor.high)
                if problem or not self._context.set_input_shape(tensor.name, value.shape):
                    raise ValueError(
                        problem or f"TensorRT refused shape {list(value.shape)} for '{tensor.name}'"
                    )
            tensor.store(value)

    def _launch(self) -> None:
        """Copies in, execute_async_v3, copies out: all queued on the runner's stream."""
        for tensor in self._tensors:
            if tensor.is_input and not tensor.on_host:
                size = tensor.kind.nbytes(tuple(self._context.get_tensor_shape(tensor.name)))
                self._cuda.copy_to_device(tensor.pointer, tensor.host_pointer, size, self._stream)
        with collecting(self._trt) as said:
            if not self._context.execute_async_v3(int(self._stream)):
                raise RuntimeError(f"execute_async_v3 failed; TensorRT said: {said.errors()[-1:]}")
        for tensor in self._tensors:
            if not tensor.is_input:
                size = tensor.kind.nbytes(tuple(self._context.get_tensor_shape(tensor.name)))
                self._cuda.copy_to_host(tensor.host_pointer, tensor.pointer, size, self._stream)

    def _collect(self) -> list[np.ndarray]:
        by_name = {tensor.name: tensor for tensor in self._tensors}
        return [by_name[name].read(tuple(self._context.get_tensor_shape(name))) for name in self.output_names]

    def _run(self, arrays, timed: bool) -> tuple[list[np.ndarray], float]:
        """Outputs, and the CUDA-event milliseconds of copies + execution summed over the slices
        (one slice unless the engine has a fixed batch smaller than the feeds)."""
        import numpy as np

        batched = {t.name for t in self._tensors if t.is_input and not t.on_host}
        total = len(arrays[next(iter(batched))]) if batched else 0
        fixed = self._fixed_batch
        slices = [(0, total)] if fixed is None or total == fixed else batch_chunks(total, fixed)
        parts, elapsed = [], 0.0
        for start, stop in slices:
            self._stage(
                {name: value[start:stop] if name in batched else value for name, value in arrays.items()}
            )
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
        """Free buffers, events and the stream; safe on a half-opened runner and when called twice.
        Every release is attempted even if one fails; the first failure is raised at the end."""
        failures = []

        def release(call, *args):
            try:
                call(*args)
            except Exception as exc:  # keep freeing the rest
                failures.append(exc)

        for tensor in self._tensors:
            if tensor.pointer:
                release(self._cuda.free, tensor.pointer)
                tensor.pointer = 0
            if tensor.host_pointer:
                tensor.host = None
                release(self._cuda.free_pinned, tensor.host_pointer)
                tensor.host_pointer = 0
        for name in ("_start", "_end"):
            if getattr(self, name) is not None:
                release(self._cuda.call, "cudaEventDestroy", getattr(self, name))
                setattr(self, name, None)
        if self._stream is not None:
            release(self._cuda.call, "cudaStreamDestroy", self._stream)
            self._stream = None
        self._context = None  # the context goes before the engine, the engine before the runtime
        self._engine = None
        if failures:
            raise failures[0]
