"""ONNX Runtime on CPUs. The build is ONNX Runtime's offline graph optimisation: the optimised
graph is saved next to the model so start-up on the device does no optimisation work."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.recipe.base import StrictModel
from optimize.registries import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime, TritonModel
from optimize.runtimes.onnxruntime_int8 import prepare
from optimize.versions import cpu_model


class OnnxRuntimeSettings(StrictModel):
    graph_optimization_level: Literal["basic", "extended", "all"] = Field(
        "extended",
        description="offline optimisation; 'all' adds layout transforms tied to the build host's CPU",
    )
    execution_mode: Literal["sequential", "parallel"] = Field("sequential", description="operator scheduling")
    inter_op_threads: int | None = Field(None, ge=1, description="threads across operators (parallel mode)")
    unsigned_relu_activations: bool = Field(
        True,
        description="store signed zero-point-0 INT8 activations that follow a ReLU or ReLU6 as uint8, so "
        "the layer fuses into QLinearConv (symmetric files made for TensorRT need it on CPUs): after a "
        "ReLU identical up to 127·scale, then saturating at 255·scale instead; after a ReLU6 the same "
        "range in twice the steps. The engine is measured against the model file",
    )


class OnnxRuntimeRunner(Runner):
    def __init__(self, path: Path, threads: int | None, settings: OnnxRuntimeSettings):
        from optimize.onnx_tools import session

        # The graph was optimised at build time; only hardware-specific fusions remain to do.
        self.session = session(
            path,
            optimization="all",
            threads=threads,
            inter_op_threads=settings.inter_op_threads,
            parallel=settings.execution_mode == "parallel",
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds):
        return self.session.run(None, feeds)


@RUNTIMES.register("onnxruntime")
class OnnxRuntime(Runtime):
    """ONNX Runtime's CPU execution provider: the engine is the model after ONNX Runtime's own
    graph optimisation, saved as an .ort.onnx file."""

    Settings = OnnxRuntimeSettings
    distribution = "onnxruntime"
    library = "onnxruntime"
    int8_weight_format = "integer"
    engine_file = "model.ort.onnx"
    triton = TritonModel(files={"model.ort.onnx": "model.onnx"}, platform="onnxruntime_onnx")

    def availability(self, device_class) -> Availability:
        problem = self.version_problem(device_class)
        if problem:
            return problem
        foreign = self.foreign_arch(device_class)
        if foreign:
            if device_class.settings.graph_optimization_level != "all":
                return Availability(True, False, f"built here, but {foreign}")
            return Availability(False, False, f"'all' optimisation must run where it runs: {foreign}")
        return Availability(True, True)

    def device_identity(self, device_class) -> dict[str, Any]:
        identity = super().device_identity(device_class)
        if device_class.settings.graph_optimization_level == "all":
            identity["cpu"] = cpu_model()  # 'all' bakes layout choices for this CPU into the graph
        return identity

    def build(self, model: Artifact, device_class, workdir: Path) -> dict[str, Any]:
        import onnx

        from optimize.onnx_macs import integer_mac_share
        from optimize.onnx_tools import save_model, session

        target = workdir / self.engine_file
        rewrites, source = {}, model.file
        if model.precision in ("int8", "int4"):  # only quantized files have activations to re-type
            graph = onnx.load(str(model.file))  # whole: a rewritten copy is saved with its weights
            rewrites = prepare(graph, device_class.settings.unsigned_relu_activations)
        if any(rewrites.values()):
            source = workdir / "rewritten.onnx"
            save_model(graph, source)
        session(source, optimization=device_class.settings.graph_optimization_level, save_optimized_to=target)
        if source != model.file:
            source.unlink()
        # ONNX Runtime's CPU kernels compute an fp16 graph's float ops in fp16 where they exist
        float_precision = "fp16" if model.precision == "fp16" else "fp32"
        share = integer_mac_share(
            onnx.load(str(target), load_external_data=False), input_shapes=model.input_shapes
        )
        session_options = {
            "intra_op_num_threads": device_class.threads,
            "inter_op_num_threads": device_class.settings.inter_op_threads,
            "execution_mode": device_class.settings.execution_mode,
            "graph_optimization_level": device_class.settings.graph_optimization_level,
            "providers": ["CPUExecutionProvider"],
        }
        write_artifact_meta(
            workdir,
            ArtifactKind.ENGINE,
            self.engine_file,
            runtime=self.name,
            runtime_version=self.version(),
            device_class=device_class.name,
            precision=model.precision,
            session_options=session_options,
        )
        info = {
            "session_options": session_options,
            "int8_rewrites": rewrites,
            "float_precision": float_precision,
        }
        return info if share is None else {**info, "int8_mac_share": share}

    def open(self, engine: Artifact, device_class) -> Runner:
        return OnnxRuntimeRunner(engine.file, device_class.threads, device_class.settings)

    def inexact_rewrite(self, build: dict[str, Any]) -> str | None:
        rewrites = build.get("int8_rewrites", {})
        changed = [
            f"{rewrites[kind]} {text}"
            for kind, text in (
                (
                    "unsigned_relu",
                    "after a ReLU: identical up to 127·scale, saturating at 255·scale above it",
                ),
                ("clip_folded", "after a ReLU6: the same range in twice the steps"),
            )
            if rewrites.get(kind)
        ]
        if not changed:
            return None
        return "INT8 activations stored as uint8 for ONNX Runtime's fused kernels: " + "; ".join(changed)
