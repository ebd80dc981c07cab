"""OpenVINO on Intel CPUs (and GPUs / NPUs where the plugin is present). The build converts the
ONNX model to OpenVINO IR (model.xml + model.bin) and compiles it once to prove the device
accepts it; evaluation compiles it with the class's performance hint and threads."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.recipe.base import StrictModel
from optimize.registries import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime, TritonModel


class OpenVINOSettings(StrictModel):
    device: Literal["CPU", "GPU", "NPU", "AUTO"] = Field("CPU", description="OpenVINO device plugin")
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY", description="LATENCY: one request as fast as possible; THROUGHPUT: many in parallel"
    )
    num_streams: int | None = Field(
        None, ge=1, description="parallel inference streams (null: from the hint)"
    )
    inference_precision: Literal["f32", "bf16", "f16"] | None = Field(
        "f32",
        description="precision of the layers that are not quantized, FP32 baselines included; null: the "
        "plugin's default, which is bf16 on CPUs with bf16 units (an 'FP32' model then runs in bf16)",
    )
    ir_weights: Literal["fp32", "fp16"] = Field(
        "fp32",
        description="float weights stored in the IR; fp16 halves the files, the plugin widens them at load",
    )


def compile_config(settings: OpenVINOSettings, threads: int | None) -> dict[str, str]:
    """OpenVINO properties for compile_model, from a device class."""
    config = {"PERFORMANCE_HINT": settings.performance_hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    if settings.num_streams:
        config["NUM_STREAMS"] = str(settings.num_streams)
    if settings.inference_precision:
        config["INFERENCE_PRECISION_HINT"] = settings.inference_precision
    return config


class OpenVINORunner(Runner):
    def __init__(self, model_xml: Path, settings: OpenVINOSettings, threads: int | None):
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(str(model_xml), settings.device, compile_config(settings, threads))
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]

    def run(self, feeds):
        self.request.infer(feeds)
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]


@RUNTIMES.register("openvino")
class OpenVINORuntime(Runtime):
    """OpenVINO's CPU plugin: the engine is the converted IR (model.xml + model.bin)."""

    Settings = OpenVINOSettings
    distribution = "openvino"
    library = "openvino"
    int8_weight_format = "dequantize"
    engine_file = "model.xml"
    triton = TritonModel(files={"model.xml": "model.xml", "model.bin": "model.bin"}, backend="openvino")

    def availability(self, device_class) -> Availability:
        problem = self.version_problem(device_class)
        if problem:
            return problem
        foreign = self.foreign_arch(device_class)
        if foreign:
            return Availability(True, False, f"IR built here, but {foreign}")
        import openvino as ov

        devices = ov.Core().available_devices
        wanted = device_class.settings.device
        if wanted != "AUTO" and not any(d.split(".")[0] == wanted for d in devices):
            return Availability(
                True, False, f"no OpenVINO {wanted} device here (available: {', '.join(devices)})"
            )
        return Availability(True, True)

    def build(self, model: Artifact, device_class, workdir: Path) -> dict[str, Any]:
        import openvino as ov

        converted = ov.convert_model(str(model.file))
        ov.save_model(
            converted,
            str(workdir / self.engine_file),
            compress_to_fp16=device_class.settings.ir_weights == "fp16",
        )
        info: dict[str, Any] = {"ir_files": ["model.xml", "model.bin"]}
        if self.availability(device_class).can_run:
            info.update(self._compiled_facts(workdir / self.engine_file, model, device_class))
        write_artifact_meta(
            workdir,
            ArtifactKind.ENGINE,
            self.engine_file,
            runtime=self.name,
            runtime_version=self.version(),
            device_class=device_class.name,
            precision=model.precision,
            compile_config=compile_config(device_class.settings, device_class.threads),
        )
        return info

    @staticmethod
    def _compiled_facts(model_xml: Path, model: Artifact, device_class) -> dict[str, Any]:
        """Compile once (proving the device takes the model) at the model's example input shapes,
        and read what the plugin made of it: the precision it runs float layers in, and the
        share of the MACs its kernels do in INT8."""
        import openvino as ov

        settings = device_class.settings
        core = ov.Core()
        ir = core.read_model(str(model_xml))
        shapes = model.input_shapes
        if shapes and all(port.get_any_name() in shapes for port in ir.inputs):
            ir.reshape({port.get_any_name(): shapes[port.get_any_name()] for port in ir.inputs})
        started = time.perf_counter()
        compiled = core.compile_model(ir, settings.device, compile_config(settings, device_class.threads))
        facts: dict[str, Any] = {
            "compile_time_s": time.perf_counter() - started,
            "device_name": core.get_property(settings.device, "FULL_DEVICE_NAME")
            if settings.device != "AUTO"
            else "AUTO",
        }
        with contextlib.suppress(RuntimeError):  # a plugin without the property (some NPUs)
            hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            facts["float_precision"] = {"f32": "fp32", "f16": "fp16"}.get(hint, hint)  # the tables' names
        share = integer_mac_share(compiled.get_runtime_model())
        if share is not None:
            facts["int8_mac_share"] = share
        return facts

    def open(self, engine: Artifact, device_class) -> Runner:
        return OpenVINORunner(engine.file, device_class.settings, device_class.threads)


# Executed layer types that multiply-accumulate, in OpenVINO's runtime (execution) graph.
_MAC_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")


def integer_mac_share(runtime_model) -> float | None:
    """The share of the MACs that run in an integer precision (u8/i8), from the runtime model of a
    compiled model: what the plugin executes, after its own fusions and precision choices.
    A layer's MACs are its output elements (batch 1) times its weights per output channel, or
    times the shared dimension for a MatMul of two activations."""
    import math

    total = integer = 0
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) not in _MAC_LAYERS:
            continue
        output = op.get_output_partial_shape(0)
        weights = op.input(1).get_partial_shape()
        if output.rank.is_dynamic or weights.is_dynamic or any(d.is_dynamic for d in list(output)[1:]):
            return None
        dims = [1, *(d.get_length() for d in list(output)[1:])]
        source = op.input(1).get_source_output().get_node().get_rt_info()["layerType"].astype(str)
        if source == "Const":  # weights: [out channels, ...] (grouped: [out, in/group, ...])
            channels = dims[1] if info["layerType"].astype(str) != "FullyConnected" else dims[-1]
            per_output = math.prod(d.get_length() for d in weights) // max(channels, 1)
        else:  # activations times activations: the reduced dimension of the first input
            first = op.input(0).get_partial_shape()
            if first.is_dynamic:
                return None
            per_output = first[first.rank.get_length() - 1].get_length()
        macs = math.prod(dims) * per_output
        total += macs
        if info["runtimePrecision"].astype(str) in ("u8", "i8"):
            integer += macs
    return integer / total if total else None
