"""Export the torch model to ONNX, check it, and prove ONNX Runtime computes the same outputs."""

from __future__ import annotations

import warnings

from pydantic import Field

from optimize.artifacts import ArtifactKind, write_artifact_meta
from optimize.errors import StageError
from optimize.registries import STAGES
from optimize.stages.base import Stage, StageContext, StageOutput, StageParams

PARITY_ROLES = ("eval", "calibration", "train")


class ExportParams(StageParams):
    opset: int = Field(17, ge=13, le=23, description="ONNX opset (per-channel QDQ needs ≥ 13, INT4 DQ ≥ 21)")
    dynamic_batch: bool | None = Field(
        None, description="dynamic batch axis; default: model.input.dynamic_batch"
    )
    parity_samples: int = Field(
        64, ge=1, le=100_000, description="real samples compared between torch and ONNX Runtime"
    )
    parity_atol: float = Field(
        1e-3, ge=0, description="allowed absolute difference, plus parity_rtol × max |output|"
    )
    parity_rtol: float = Field(1e-3, ge=0, description="allowed difference relative to the largest output")
    dynamo: bool = Field(False, description="use the torch.export-based exporter (needs onnxscript)")


def parity_limit(reference_max: float, atol: float, rtol: float) -> float:
    return atol + rtol * reference_max


@STAGES.register("export")
class ExportStage(Stage):
    """Export to ONNX with named inputs and outputs and a dynamic batch axis, run the ONNX checker
    and shape inference, and fail unless ONNX Runtime matches torch on real inputs."""

    Params = ExportParams
    consumes = ArtifactKind.TORCH
    produces = ArtifactKind.ONNX
    libraries = ("torch", "onnx", "onnxruntime", "onnxscript")

    def run(self, params: ExportParams, context: StageContext) -> StageOutput:
        import torch

        from optimize.onnx_tools import load_checked, save_model

        model = context.load_torch()
        inputs = context.model_source.inputs()
        outputs = context.model_source.output_names()
        dynamic_axes = {}
        for spec in inputs:
            axes = {axis: f"{spec.name}_dim{axis}" for axis in spec.dynamic_axes}
            if params.dynamic_batch if params.dynamic_batch is not None else spec.dynamic_batch:
                axes[0] = "batch"
            if axes:
                dynamic_axes[spec.name] = dict(sorted(axes.items()))
        if any(0 in axes for axes in dynamic_axes.values()):
            dynamic_axes.update({name: {0: "batch"} for name in outputs})
        path = context.workdir / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model,
                    context.model_source.example_inputs(batch=1),
                    str(path),
                    input_names=[spec.name for spec in inputs],
                    output_names=outputs,
                    dynamic_axes=dynamic_axes or None,
                    opset_version=params.opset,
                    do_constant_folding=True,
                    dynamo=params.dynamo,
                )
            except Exception as exc:
                raise StageError(
                    context.step_id, f"torch.onnx.export failed: {type(exc).__name__}: {exc}"
                ) from exc
        try:
            checked = load_checked(path)
        except Exception as exc:
            raise StageError(context.step_id, f"the exported model fails the ONNX checker: {exc}") from exc
        save_model(checked, path)
        parity = self._parity(model, params, context)
        write_artifact_meta(
            context.workdir,
            ArtifactKind.ONNX,
            "model.onnx",
            precision="fp32",
            opset=params.opset,
            inputs=[spec.model_dump(mode="json") for spec in inputs],
            outputs=outputs,
            fp32_reference=True,
        )
        return StageOutput(
            metrics={f"parity_{k}": v for k, v in parity.items()}, info={"dynamic_axes": dynamic_axes}
        )

    def _parity(self, model, params: ExportParams, context: StageContext) -> dict[str, float]:
        """Largest difference between torch and ONNX Runtime outputs over real samples."""
        import numpy as np
        import torch

        from optimize.onnx_tools import output_difference, session

        role = next((r for r in PARITY_ROLES if context.data.has(r)), None)
        io = context.model_source.io
        ort_session = session(context.workdir / "model.onnx")
        worst = {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "samples": 0.0}
        batches = (
            ((inputs, None) for inputs, _ in context.data.loader(role, 16))
            if role
            else [(context.model_source.example_inputs(batch=4), None)]
        )
        seen = 0
        with torch.inference_mode():
            for inputs, _ in batches:
                references = io.named([t.numpy() for t in io.all_outputs(model(*io.positional(inputs)))])
                candidates = io.named(ort_session.run(None, io.feeds(inputs)))
                for output, reference in references.items():
                    difference = output_difference(reference, candidates[output])
                    limit = parity_limit(
                        float(np.abs(reference).max(initial=0.0)), params.parity_atol, params.parity_rtol
                    )
                    if difference["max_abs_diff"] > limit:
                        raise StageError(
                            context.step_id,
                            f"ONNX Runtime differs from torch by {difference['max_abs_diff']:.3g} (> {limit:.3g}) "
                            f"in output '{output}' on {role or 'random'} data; the export is not faithful "
                            "(raise parity_atol only if this difference is expected)",
                        )
                    worst["max_abs_diff"] = max(worst["max_abs_diff"], difference["max_abs_diff"])
                    worst["mean_abs_diff"] = max(worst["mean_abs_diff"], difference["mean_abs_diff"])
                seen += len(io.positional(inputs)[0])
                if seen >= params.parity_samples:
                    break
        worst["samples"] = float(seen)
        return worst
