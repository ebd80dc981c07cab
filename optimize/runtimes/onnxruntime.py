"""ONNX Runtime on CPUs. The build is ONNX Runtime's offline graph optimisation: the optimised
graph is saved next to the model so start-up on the device does no optimisation work."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.recipe.base import StrictModel
from optimize.runtimes import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime
from optimize.versions import cpu_model


class OnnxRuntimeSettings(StrictModel):
    graph_optimization_level: Literal["basic", "extended", "all"] = Field(
        "extended",
        description="offline optimisation; 'all' adds layout transforms tied to the build host's CPU",
    )
    execution_mode: Literal["sequential", "parallel"] = Field("sequential", description="operator scheduling")
    inter_op_threads: int | None = Field(None, ge=1, description="threads across operators (parallel mode)")


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
    Settings = OnnxRuntimeSettings
    distribution = "onnxruntime"
    engine_file = "model.ort.onnx"

    def availability(self, device_class) -> Availability:
        problem = self.version_problem(device_class)
        if problem:
            return problem
        host = platform.machine()
        portable = device_class.settings.graph_optimization_level != "all"
        if device_class.arch not in ("any", host):
            if portable:
                return Availability(
                    True, False, f"built here, but runs only on {device_class.arch} (host is {host})"
                )
            return Availability(
                False, False, f"'all' optimisation must run on a {device_class.arch} host (host is {host})"
            )
        return Availability(True, True)

    def device_identity(self, device_class) -> dict[str, Any]:
        identity = super().device_identity(device_class)
        if device_class.settings.graph_optimization_level == "all":
            identity["cpu"] = cpu_model()  # 'all' bakes layout choices for this CPU into the graph
        return identity

    def build(self, model: Artifact, device_class, workdir: Path) -> dict[str, Any]:
        from optimize.onnx_tools import session

        target = workdir / self.engine_file
        session(
            model.file, optimization=device_class.settings.graph_optimization_level, save_optimized_to=target
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
        return {"session_options": session_options}

    def open(self, engine: Artifact, device_class) -> Runner:
        return OnnxRuntimeRunner(engine.file, device_class.threads, device_class.settings)
