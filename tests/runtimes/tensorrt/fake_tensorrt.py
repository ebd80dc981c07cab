"""A call-recording stand-in for the `tensorrt` module and cuda-python's runtime bindings, for
tests only: no TensorRT or GPU can be installed here, so the adapter's calls (builder config,
parser, timing cache, runtime, engine, execution context, CUDA memory, streams and events) are
exercised against objects that follow the binding signatures of TensorRT 10.x/11.x
(python/src/infer/pyCore.cpp, parsers/pyOnnx.cpp) and cuda.bindings.runtime, record every call,
and keep state (device memory, timing cache entries, live allocations) that the tests check.

It is in addition to the `gpu`-marked tests against the real library, never instead of them:
what it proves is that the adapter calls the documented API in the right order with the right
values and frees what it allocates, not that TensorRT accepts it.
"""

from __future__ import annotations

import ctypes
import enum
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np


class _PybindEnum(enum.IntEnum):
    """pybind11 enums: int() gives the value, str() 'Type.MEMBER', .name the member's name."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class Severity(_PybindEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


def _enum(name: str, *members: str) -> type[enum.IntEnum]:
    return _PybindEnum(name, {member: index for index, member in enumerate(members)})


DataType = _enum(
    "DataType",
    "FLOAT",
    "HALF",
    "INT8",
    "INT32",
    "BOOL",
    "UINT8",
    "FP8",
    "BF16",
    "INT64",
    "INT4",
    "FP4",
    "E8M0",
)
NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.INT8: np.int8,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
}
DLA_LAYER_TYPES = {"CONVOLUTION", "ACTIVATION", "POOLING", "ELEMENTWISE", "SCALE"}
ONNX_LAYER_TYPES = {"Conv": "CONVOLUTION", "Relu": "ACTIVATION", "Add": "ELEMENTWISE", "MaxPool": "POOLING"}


@dataclass
class IOSpec:
    """One I/O tensor of a fake engine."""

    name: str
    dtype: Any  # DataType member
    shape: tuple[int, ...]  # -1: dynamic
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # min, opt, max
    on_host: bool = False  # a shape tensor input (its values are read from host memory)


@dataclass
class EngineSpec:
    """What a fake engine computes: inputs, outputs (in engine order), and two functions of the
    input arrays (shape tensors as value arrays): the output shapes and the output values."""

    inputs: list[IOSpec]
    outputs: list[IOSpec]
    shapes: Any  # (input shapes by name, shape tensor values by name) -> {output: shape}
    compute: Any  # {input: array} -> {output: array}
    identity: str = "gpu-0"  # what deserialize_cuda_engine compares with the runtime's
    layers: list[dict] = field(default_factory=list)  # engine inspector entries


class Recorder:
    """Every call made on the stand-ins, in order, as (object.method, args)."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    def __call__(self, name: str, *args) -> None:
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[tuple]:
        return [args for called, args in self.calls if called == name]


def make_tensorrt(
    version: str = "10.3.0",
    *,
    dla_cores: int = 0,
    identity: str = "gpu-0",
    build_fails: bool = False,
    unsupported_ops: frozenset[str] = frozenset(),
    engine: EngineSpec | None = None,
    build_log: tuple[tuple[int, str], ...] = (),
    execute_fails: bool = False,
):
    """A `tensorrt` module stand-in. `engine` is what every build produces and every deserialize
    returns; `identity` is the device the caches and engines belong to."""
    record = Recorder()
    module = SimpleNamespace(__name__="fake_tensorrt", __version__=version, record=record)
    major = int(version.split(".")[0])
    module.DataType = DataType
    module.NetworkDefinitionCreationFlag = (
        _enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH", "STRONGLY_TYPED")
        if major < 11
        else _enum("NetworkDefinitionCreationFlag", "PREFER_AOT_PYTHON_PLUGINS", "STRONGLY_TYPED")
    )
    flags = ["TF32", "SPARSE_WEIGHTS", "GPU_FALLBACK", "VERSION_COMPATIBLE", "REFIT"]
    module.BuilderFlag = _enum("BuilderFlag", *(flags + (["FP16", "INT8"] if major < 11 else [])))
    module.MemoryPoolType = _enum("MemoryPoolType", "WORKSPACE", "DLA_MANAGED_SRAM")
    module.HardwareCompatibilityLevel = _enum(
        "HardwareCompatibilityLevel", "NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"
    )
    module.ProfilingVerbosity = _enum("ProfilingVerbosity", "LAYER_NAMES_ONLY", "NONE", "DETAILED")
    module.DeviceType = _enum("DeviceType", "GPU", "DLA")
    module.TensorIOMode = _enum("TensorIOMode", "NONE", "INPUT", "OUTPUT")
    module.TensorLocation = _enum("TensorLocation", "DEVICE", "HOST")
    module.LayerInformationFormat = _enum("LayerInformationFormat", "ONELINE", "JSON")
    module.ErrorCode = _enum("ErrorCode", "SUCCESS", "INTERNAL_ERROR", "INVALID_NODE", "UNSUPPORTED_NODE")
    module.engine = engine

    class ILogger:
        Severity = Severity

        def __init__(self):
            pass

    module.ILogger = ILogger

    class TimingCache:
        def __init__(self, tag: str, entries: dict):
            self.tag, self.entries = tag, dict(entries)

        def serialize(self) -> bytes:
            record("TimingCache.serialize")
            return json.dumps({"tag": self.tag, "entries": self.entries}).encode()

        def combine(self, other, ignore_mismatch: bool) -> bool:
            record("TimingCache.combine", ignore_mismatch)
            if other.tag != self.tag and not ignore_mismatch:
                return False
            self.entries.update(other.entries)
            return True

    class Layer:
        def __init__(self, name, kind):
            self.name, self.type = name, getattr(module.LayerType, kind)

    module.LayerType = _enum("LayerType", *sorted(DLA_LAYER_TYPES | {"TOPK", "SHAPE", "SHUFFLE"}))

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.layers = flags, [], []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            return SimpleNamespace(name=self.inputs[index])

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, index):
            return self.layers[index]

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            record("Profile.set_shape", name, tuple(low), tuple(opt), tuple(high))
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class BuilderConfig:
        def __init__(self):
            self.flags: set = {module.BuilderFlag.TF32}
            self.pools, self.profiles, self.timing_cache = {}, [], None
            self.builder_optimization_level = 3
            self.hardware_compatibility_level = module.HardwareCompatibilityLevel.NONE
            self.profiling_verbosity = module.ProfilingVerbosity.LAYER_NAMES_ONLY
            self.max_aux_streams = -1
            self.default_device_type = module.DeviceType.GPU
            self.DLA_core = -1

        def set_flag(self, flag):
            record("BuilderConfig.set_flag", flag.name)
            self.flags.add(flag)

        def clear_flag(self, flag):
            record("BuilderConfig.clear_flag", flag.name)
            self.flags.discard(flag)

        def set_memory_pool_limit(self, pool, size):
            record("BuilderConfig.set_memory_pool_limit", pool.name, size)
            self.pools[pool] = size

        def add_optimization_profile(self, profile):
            record("BuilderConfig.add_optimization_profile", dict(profile.shapes))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes):
            record("BuilderConfig.create_timing_cache", len(data))
            if not data:
                return TimingCache(identity, {})
            try:
                parsed = json.loads(bytes(data))
            except ValueError:
                raise RuntimeError("IBuilderConfig::createTimingCache: invalid timing cache") from None
            return TimingCache(parsed["tag"], parsed["entries"])

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            record("BuilderConfig.set_timing_cache", cache.tag, ignore_mismatch)
            if cache.tag != identity and not ignore_mismatch:
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

        def get_device_type(self, layer):
            return self.default_device_type

        def can_run_on_DLA(self, layer) -> bool:
            return layer.type.name in DLA_LAYER_TYPES

    class Builder:
        def __init__(self, logger):
            record("Builder", logger)
            self.logger = logger
            self.num_DLA_cores = dla_cores

        def create_network(self, flags):
            record("Builder.create_network", flags)
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            record("Builder.build_serialized_network", network.num_layers)
            for severity, text in build_log:
                self.logger.log(Severity(severity), text)
            if build_fails:
                self.logger.log(
                    Severity.ERROR, "Internal error: could not find any implementation for node conv1"
                )
                return None
            if config.timing_cache is not None:  # tuning adds an entry per layer
                config.timing_cache.entries.update({layer.name: identity for layer in network.layers})
            return f"FAKEENGINE:{identity}".encode()

    module.Builder = Builder

    class ParserError:
        def __init__(self, index, node):
            self._index, self._node = index, node

        def code(self):
            return module.ErrorCode.UNSUPPORTED_NODE

        def node(self):
            return self._index

        def node_name(self):
            return self._node.name

        def node_operator(self):
            return self._node.op_type

        def desc(self):
            return f"No importer registered for op: {self._node.op_type}"

    class OnnxParser:
        """Reads the real ONNX file: its inputs and nodes become the network's."""

        def __init__(self, network, logger):
            record("OnnxParser", logger)
            self.network, self.errors = network, []

        def parse_from_file(self, path) -> bool:
            import onnx

            record("OnnxParser.parse_from_file", path)
            graph = onnx.load(path, load_external_data=False).graph
            initializers = {tensor.name for tensor in graph.initializer}
            self.network.inputs = [value.name for value in graph.input if value.name not in initializers]
            for index, node in enumerate(graph.node):
                if node.op_type in unsupported_ops:
                    self.errors.append(ParserError(index, node))
                kind = ONNX_LAYER_TYPES.get(node.op_type, "SHUFFLE")
                self.network.layers.append(Layer(node.name or f"{node.op_type}_{index}", kind))
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

    module.OnnxParser = OnnxParser

    class Runtime:
        def __init__(self, logger):
            record("Runtime", logger)
            self.logger = logger
            self.DLA_core = -1
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes):
            record("Runtime.deserialize_cuda_engine", len(data), self.DLA_core)
            if data != f"FAKEENGINE:{identity}".encode() or module.engine is None:
                self.logger.log(
                    Severity.ERROR, "IRuntime::deserializeCudaEngine: engine plan file is not compatible"
                )
                return None
            return Engine(module.engine, self.logger)

    module.Runtime = Runtime

    class Engine:
        def __init__(self, spec: EngineSpec, logger):
            self.spec, self.logger = spec, logger
            self.tensors = {t.name: (t, True) for t in spec.inputs} | {
                t.name: (t, False) for t in spec.outputs
            }
            self.device_memory_size_v2 = 4096

        @property
        def num_io_tensors(self):
            return len(self.tensors)

        def get_tensor_name(self, index):
            return list(self.tensors)[index]

        def get_tensor_mode(self, name):
            return module.TensorIOMode.INPUT if self.tensors[name][1] else module.TensorIOMode.OUTPUT

        def get_tensor_location(self, name):
            return (
                module.TensorLocation.HOST if self.tensors[name][0].on_host else module.TensorLocation.DEVICE
            )

        def get_tensor_dtype(self, name):
            return self.tensors[name][0].dtype

        def get_tensor_shape(self, name):
            return self.tensors[name][0].shape

        def get_tensor_profile_shape(self, name, profile_index):
            spec, is_input = self.tensors[name]
            assert is_input and not spec.on_host and profile_index == 0
            return list(spec.profile)

        def get_tensor_profile_values(self, profile_index, name):  # positional: (profile, name)
            spec, is_input = self.tensors[name]
            assert is_input and spec.on_host and profile_index == 0
            return [list(values) for values in spec.profile]

        def create_execution_context(self):
            record("Engine.create_execution_context")
            return Context(self)

        def create_engine_inspector(self):
            layers = self.spec.layers
            return SimpleNamespace(
                get_engine_information=lambda fmt: json.dumps(
                    {"Layers": layers, "Bindings": list(self.tensors)}
                )
            )

    class Context:
        def __init__(self, engine: Engine):
            self.engine, self.input_shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name, shape) -> bool:
            record("Context.set_input_shape", name, tuple(shape))
            spec = self.engine.tensors[name][0]
            low, _, high = spec.profile
            ok = len(shape) == len(low) and all(
                lo <= d <= hi for d, lo, hi in zip(shape, low, high, strict=True)
            )
            if ok:
                self.input_shapes[name] = tuple(shape)
            return ok

        def set_tensor_address(self, name, pointer) -> bool:
            record("Context.set_tensor_address", name, pointer)
            self.addresses[name] = pointer
            return True

        def _values(self) -> dict[str, np.ndarray]:
            values = {}
            for spec in self.engine.spec.inputs:
                if spec.on_host:  # read from host memory, as TensorRT reads shape tensors
                    count = int(np.prod(spec.shape))
                    raw = ctypes.string_at(
                        self.addresses[spec.name], count * np.dtype(NUMPY[spec.dtype]).itemsize
                    )
                    values[spec.name] = np.frombuffer(raw, NUMPY[spec.dtype]).copy()
            return values

        def get_tensor_shape(self, name):
            spec, is_input = self.engine.tensors[name]
            if is_input:
                return spec.shape if spec.on_host else self.input_shapes[name]
            return self.engine.spec.shapes(self.input_shapes, self._values())[name]

        def execute_async_v3(self, stream) -> bool:
            record("Context.execute_async_v3", stream)
            if execute_fails:
                shared = self.engine.logger
                shared.log(
                    Severity.ERROR, "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (out of memory)"
                )
                return False
            arrays = self._values()
            for spec in self.engine.spec.inputs:
                if not spec.on_host:
                    shape = self.input_shapes[spec.name]
                    raw = cudart.device_read(self.addresses[spec.name], _nbytes(spec.dtype, shape))
                    arrays[spec.name] = _decode(spec.dtype, raw, shape)
            for name, value in self.engine.spec.compute(arrays).items():
                cudart.device_write(self.addresses[name], _encode(self.engine.tensors[name][0].dtype, value))
            return True

    cudart = None  # set by make_cudart; the context's device memory lives there

    def attach(runtime_bindings):
        nonlocal cudart
        cudart = runtime_bindings

    module.attach = attach
    return module


def _nbytes(dtype, shape) -> int:
    if dtype == DataType.BF16:
        return int(np.prod(shape)) * 2
    return int(np.prod(shape)) * np.dtype(NUMPY[dtype]).itemsize


def _decode(dtype, raw: bytes, shape) -> np.ndarray:
    if dtype == DataType.BF16:  # the upper half of a float32
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(raw, NUMPY[dtype]).reshape(shape)


def _encode(dtype, value: np.ndarray) -> bytes:
    if dtype == DataType.BF16:  # exact for values with 8 significant bits
        return (np.asarray(value, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return np.asarray(value, NUMPY[dtype]).tobytes()


class CudaError(int):
    @property
    def value(self) -> int:
        return int(self)


class FakeCudart:
    """cuda.bindings.runtime's calls the runner makes: every call returns (error, value...) like
    the real bindings; device memory is bytes in a dict, pinned host memory is real (ctypes), and
    `fail_on` makes the n-th call of a function fail, to test clean-up."""

    SUCCESS, NO_MEMORY = CudaError(0), CudaError(2)
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self, fail_on: dict[str, int] | None = None):
        self.record = Recorder()
        self.device: dict[int, bytearray] = {}
        self.pinned: dict[int, Any] = {}
        self.streams: set[int] = set()
        self.events: set[int] = set()
        self.fail_on = dict(fail_on or {})
        self.counts: dict[str, int] = {}
        self._next = 0x1000

    def _failing(self, name: str) -> bool:
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.fail_on.get(name) == self.counts[name]

    def _handle(self) -> int:
        self._next += 0x1000
        return self._next

    def live(self) -> dict[str, int]:
        """What is allocated and not freed."""
        return {
            "device": len(self.device),
            "pinned": len(self.pinned),
            "streams": len(self.streams),
            "events": len(self.events),
        }

    def device_read(self, pointer: int, size: int) -> bytes:
        return bytes(self.device[pointer][:size])

    def device_write(self, pointer: int, data: bytes) -> None:
        self.device[pointer][: len(data)] = data

    def cudaGetErrorName(self, error):
        return self.SUCCESS, {0: b"cudaSuccess", 2: b"cudaErrorMemoryAllocation"}[int(error)]

    def cudaSetDevice(self, device):
        self.record("cudaSetDevice", device)
        return (self.SUCCESS,)

    def cudaFree(self, pointer):
        self.record("cudaFree", pointer)
        if pointer:
            del self.device[pointer]
        return (self.SUCCESS,)

    def cudaMemGetInfo(self):
        used = sum(len(block) for block in self.device.values())
        return self.SUCCESS, 8 * 2**30 - used, 8 * 2**30

    def cudaMalloc(self, size):
        self.record("cudaMalloc", size)
        if self._failing("cudaMalloc"):
            return self.NO_MEMORY, 0
        pointer = self._handle()
        self.device[pointer] = bytearray(size)
        return self.SUCCESS, pointer

    def cudaMallocHost(self, size):
        self.record("cudaMallocHost", size)
        if self._failing("cudaMallocHost"):
            return self.NO_MEMORY, 0
        buffer = ctypes.create_string_buffer(size)
        self.pinned[ctypes.addressof(buffer)] = buffer
        return self.SUCCESS, ctypes.addressof(buffer)

    def cudaFreeHost(self, pointer):
        self.record("cudaFreeHost", pointer)
        del self.pinned[pointer]
        return (self.SUCCESS,)

    def cudaStreamCreate(self):
        handle = self._handle()
        self.streams.add(handle)
        return self.SUCCESS, handle

    def cudaStreamDestroy(self, stream):
        self.streams.remove(stream)
        return (self.SUCCESS,)

    def cudaEventCreate(self):
        if self._failing("cudaEventCreate"):
            return self.NO_MEMORY, 0
        handle = self._handle()
        self.events.add(handle)
        return self.SUCCESS, handle

    def cudaEventDestroy(self, event):
        self.events.remove(event)
        return (self.SUCCESS,)

    def cudaMemcpyAsync(self, destination, source, size, kind, stream):
        self.record("cudaMemcpyAsync", kind, size, stream)
        assert stream in self.streams
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.device[destination][:size] = ctypes.string_at(source, size)
        else:
            ctypes.memmove(destination, bytes(self.device[source][:size]), size)
        return (self.SUCCESS,)

    def cudaEventRecord(self, event, stream):
        self.record("cudaEventRecord", event, stream)
        return (self.SUCCESS,)

    def cudaEventSynchronize(self, event):
        return (self.SUCCESS,)

    def cudaEventElapsedTime(self, start, end):
        return self.SUCCESS, 0.25

    def cudaStreamSynchronize(self, stream):
        self.record("cudaStreamSynchronize", stream)
        return (self.SUCCESS,)
