"""OpenVINO on Intel CPUs (and GPUs / NPUs where the plugin is present). The build converts the
ONNX model to OpenVINO IR (model.xml + model.bin) and compiles it once to prove the device
accepts it; evaluation compiles it with the class's performance hint and threads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.recipe.base import StrictModel
from optimize.registries import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime


class OpenVINOSettings(StrictModel):
    device: Literal["CPU", "GPU", "NPU", "AUTO"] = Field("CPU", description="OpenVINO device plugin")
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY", description="LATENCY: one request as fast as possible; THROUGHPUT: many in parallel"
    )
    num_streams: int | None = Field(
        None, ge=1, description="parallel inference streams (null: from the hint)"
    )
    inference_precision: Literal["f32", "bf16", "f16"] | None = Field(
        None, description="precision for non-quantized layers (null: the plugin's default for the device)"
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
    engine_file = "model.xml"

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
            started = time.perf_counter()
            core = ov.Core()
            core.compile_model(
                str(workdir / self.engine_file),
                device_class.settings.device,
                compile_config(device_class.settings, device_class.threads),
            )
            info["compile_time_s"] = time.perf_counter() - started
            info["device_name"] = (
                core.get_property(device_class.settings.device, "FULL_DEVICE_NAME")
                if device_class.settings.device != "AUTO"
                else "AUTO"
            )
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

    def open(self, engine: Artifact, device_class) -> Runner:
        return OpenVINORunner(engine.file, device_class.settings, device_class.threads)
