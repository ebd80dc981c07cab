"""ONNX Runtime on CPUs. The build is ONNX Runtime's offline graph optimisation: the optimised
graph is saved next to the model so start-up on the device does no optimisation work."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.recipe.base import StrictModel
from optimize.registries import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime
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
        description="store signed INT8 activations that follow a ReLU as uint8, so Conv+ReLU fuse into "
        "QLinearConv (symmetric files made for TensorRT need it on CPUs); identical up to 127·scale, "
        "but above it values saturate at 255·scale instead of 127·scale, so the effect is measured",
    )


def unsign_relu_activations(model) -> int:
    """Re-type int8 QuantizeLinear outputs fed by a ReLU (zero point 0) as uint8, with their
    DequantizeLinear consumers: ONNX Runtime drops a ReLU before a uint8 zero-point-0 Q and fuses
    the Conv into QLinearConv, which a signed Q prevents. A ReLU output is never negative, so every
    value up to 127·scale is stored exactly as before; a value above it, which the signed file
    saturates at 127·scale, now saturates at 255·scale. Outside the calibrated range the engine
    therefore computes a different function from the signed file (and from TensorRT), and the
    pipeline measures how much on the eval set. Returns how many activations were re-typed."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    retyped = set()
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        source = producers.get(node.input[0])
        zero_point = initializers.get(node.input[2])
        if source is None or source.op_type != "Relu" or zero_point is None:
            continue
        values = numpy_helper.to_array(zero_point)
        if zero_point.data_type != onnx.TensorProto.INT8 or np.any(values != 0):
            continue
        unsigned = f"{node.input[2]}_uint8"
        if unsigned not in initializers:
            initializers[unsigned] = numpy_helper.from_array(np.zeros(values.shape, np.uint8), unsigned)
            model.graph.initializer.append(initializers[unsigned])
        node.input[2] = unsigned
        for consumer in consumers.get(node.output[0], []):
            if consumer.op_type == "DequantizeLinear":
                consumer.input[2] = unsigned
        retyped.add(node.output[0])
    for value in model.graph.value_info:
        if value.name in retyped:
            value.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return len(retyped)


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
    engine_file = "model.ort.onnx"

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

        from optimize.onnx_tools import save_model, session

        target = workdir / self.engine_file
        source, retyped = model.file, 0
        if model.precision == "int8" and device_class.settings.unsigned_relu_activations:
            graph = onnx.load(str(model.file))
            retyped = unsign_relu_activations(graph)
            if retyped:
                source = workdir / "rewritten.onnx"
                save_model(graph, source)
        session(source, optimization=device_class.settings.graph_optimization_level, save_optimized_to=target)
        if source != model.file:
            source.unlink()
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
        return {"session_options": session_options, "unsigned_relu_activations": retyped}

    def open(self, engine: Artifact, device_class) -> Runner:
        return OnnxRuntimeRunner(engine.file, device_class.threads, device_class.settings)

    def inexact_rewrite(self, build: dict[str, Any]) -> str | None:
        count = build.get("unsigned_relu_activations", 0)
        if not count:
            return None
        return (
            f"{count} INT8 activations after a ReLU are stored as uint8 for ONNX Runtime's fused kernels: "
            "identical up to 127·scale, saturating at 255·scale instead of 127·scale above it"
        )
