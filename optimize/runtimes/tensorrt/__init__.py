"""TensorRT on NVIDIA GPUs (and the DLA of Jetson Orin). The build parses the ONNX file (FP32,
FP16 or INT8 QDQ) and builds a serialized engine for the GPU of the build host; evaluation
deserializes it and runs it through execute_async_v3, timed with CUDA events.

This package holds only the registered runtime, which delegates to one module per layer:
  * `settings`: `TensorRTSettings`, the device class `settings:`;
  * `plan`: device class + TensorRT version + the model's inputs -> `BuildPlan` (pure);
  * `host`: availability, engine identity and timing cache names from host facts (pure);
  * `probe`: TensorRT version, GPU facts (through cuda-python, without TensorRT), ONNX inputs;
  * `cuda`: the CUDA runtime calls through cuda-python;
  * `install`: which TensorRT and cuda-python a host needs (platform, driver, JetPack; pure);
  * `dtypes`: every TensorRT tensor type as host memory, with conversions (pure);
  * `placement`: which layers of a DLA build run on the DLA and which fell back (pure);
  * `logger`: the process's one TensorRT logger, with per-call scopes of what it said;
  * `builder`: applies a `BuildPlan` with the real `tensorrt` module;
  * `runner`: the engine session used by evaluation;
  * `report`: what `optimize targets` says about this host's CUDA, driver and TensorRT.
The submodules never import this package, so importing it has no cycle; `tensorrt` and
cuda-python are imported inside functions only, so importing `optimize.runtimes` never needs them.
"""

from __future__ import annotations

import logging
import platform
from typing import TYPE_CHECKING, Any

from optimize.artifacts import ArtifactKind, write_artifact_meta
from optimize.errors import TargetError
from optimize.registries import RUNTIMES
from optimize.runtimes.base import Availability, Runner, Runtime, TritonModel
from optimize.runtimes.tensorrt.builder import build_engine
from optimize.runtimes.tensorrt.host import availability_for, identity_from, timing_cache_dir
from optimize.runtimes.tensorrt.placement import fallback_note
from optimize.runtimes.tensorrt.plan import PlanError, make_build_plan
from optimize.runtimes.tensorrt.probe import (
    detect_gpu,
    import_tensorrt,
    l4t_release,
    onnx_input_shapes,
    tensorrt_cuda_line,
    tensorrt_probe,
)
from optimize.runtimes.tensorrt.runner import TensorRTRunner
from optimize.runtimes.tensorrt.settings import ENGINE_FILE, TensorRTSettings

if TYPE_CHECKING:
    from pathlib import Path

    from optimize.artifacts import Artifact

log = logging.getLogger(__name__)


@RUNTIMES.register("tensorrt")
class TensorRTRuntime(Runtime):
    """NVIDIA TensorRT on Jetson and data-centre GPUs: the engine is a serialized plan, valid only
    on the GPU generation and TensorRT version that built it."""

    Settings = TensorRTSettings
    distribution = "tensorrt"
    library = "tensorrt"
    engine_file = ENGINE_FILE
    triton = TritonModel(files={ENGINE_FILE: "model.plan"}, platform="tensorrt_plan")
    runs_on_gpu = True
    needs_symmetric_int8_activations = True  # explicit quantization takes signed int8 only

    def version(self) -> str:
        """From the module itself: pip installs name it tensorrt-cuXX, JetPack installs it by apt."""
        version, _ = tensorrt_probe()
        return version or "not-installed"

    def availability(self, device_class) -> Availability:
        trt_version, trt_problem = tensorrt_probe()
        facts, gpu_problem = detect_gpu() if trt_version else (None, "")
        return availability_for(
            device_class, trt_version, trt_problem, facts, gpu_problem, platform.machine()
        )

    def host_report(self) -> list[str]:
        from optimize.runtimes.tensorrt.report import host_report

        return host_report()

    def device_identity(self, device_class) -> dict[str, Any]:
        facts, problem = detect_gpu()
        if facts is None:
            raise TargetError(device_class.name, problem)
        return identity_from(self.version(), tensorrt_cuda_line(), facts, l4t_release(), platform.machine())

    def build(self, model: Artifact, device_class, workdir: Path) -> dict[str, Any]:
        trt = import_tensorrt()
        identity = self.device_identity(device_class)
        try:
            plan = make_build_plan(
                device_class, trt.__version__, onnx_input_shapes(model), identity, model.precision
            )
            cache_path = (
                timing_cache_dir(workdir) / plan.timing_cache_file if plan.timing_cache_file else None
            )
            serialized, cache_loaded, placement = build_engine(
                trt, model.file, plan, device_class.name, cache_path
            )
        except PlanError as exc:
            raise TargetError(device_class.name, str(exc)) from exc
        (workdir / ENGINE_FILE).write_bytes(serialized)
        write_artifact_meta(
            workdir,
            ArtifactKind.ENGINE,
            ENGINE_FILE,
            runtime=self.name,
            runtime_version=trt.__version__,
            device_class=device_class.name,
            precision=model.precision,
            device=identity,
            build_plan=plan.to_dict(),
            inputs=model.meta.get("inputs"),
            outputs=model.meta.get("outputs"),
        )
        for note in plan.notes:
            log.warning("%s: %s", device_class.name, note)
        info = {
            "plan": plan.to_dict(),
            "device": identity,
            "timing_cache": {"path": str(cache_path), "loaded": cache_loaded} if cache_path else None,
            "engine_mb": (workdir / ENGINE_FILE).stat().st_size / 2**20,
        }
        if placement is not None:  # a DLA class: which layers run on the DLA, which fell back
            note = fallback_note(placement)
            info.update(
                dla_placement=placement, dla_share=placement["dla_share"], notes=[note] if note else []
            )
        return info

    def open(self, engine: Artifact, device_class) -> Runner:
        return TensorRTRunner(engine, device_class.name, self.device_identity(device_class))
