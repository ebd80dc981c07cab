"""The numbers recorded for every step's output: size, parameters, MACs and eval accuracy
(or, for ONNX models, agreement with the FP32 reference as well)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optimize.artifacts import Artifact, ArtifactKind

if TYPE_CHECKING:
    import numpy as np

    from optimize.data.provider import DataProvider
    from optimize.models.base import ModelSource
    from optimize.recipe.schema import EvaluationSpec

MB = 1_000_000


def measure_torch(artifact: Artifact, source: ModelSource, data: DataProvider, task: str) -> dict[str, float]:
    from optimize.torch_io import count_macs_and_params, load_into
    from optimize.training import accuracy

    model = load_into(source.build(pretrained=False), artifact.file)
    macs, params = count_macs_and_params(model, source.example_inputs(batch=1))
    metrics = {"size_mb": artifact.size_bytes / MB, "parameters": float(params)}
    if macs is not None:
        metrics["macs"] = float(macs)
    if task == "classification" and data.has("eval") and data.labeled("eval"):
        metrics["accuracy"] = accuracy(model, data.loader("eval", 256))
    return metrics


def onnx_outputs(
    artifact: Artifact, data: DataProvider, settings: EvaluationSpec
) -> tuple[np.ndarray, np.ndarray]:
    """First outputs of an ONNX model over the eval set through ONNX Runtime on this CPU."""
    from optimize.evaluation import collect_outputs
    from optimize.runtimes.onnxruntime import OnnxRuntimeRunner, OnnxRuntimeSettings

    runner = OnnxRuntimeRunner(artifact.file, threads=None, settings=OnnxRuntimeSettings())
    return collect_outputs(runner, data, settings.batch_size, settings.max_samples)


def measure_onnx(
    artifact: Artifact,
    data: DataProvider,
    settings: EvaluationSpec,
    task: str,
    reference_outputs: np.ndarray | None,
) -> dict[str, float]:
    import onnx

    from optimize.evaluation import agreement, classification_accuracy
    from optimize.onnx_tools import weight_stats

    stats = weight_stats(onnx.load(str(artifact.file)))
    metrics = {"size_mb": artifact.size_bytes / MB, **stats}
    if data.has("eval"):
        outputs, labels = onnx_outputs(artifact, data, settings)
        if task == "classification" and data.labeled("eval"):
            metrics["accuracy"] = classification_accuracy(outputs, labels)
        if reference_outputs is not None:
            metrics.update(agreement(reference_outputs[: len(outputs)], outputs, task))
    return metrics


def measure(
    artifact: Artifact,
    source: ModelSource,
    data: DataProvider,
    settings: EvaluationSpec,
    task: str,
    reference_outputs: np.ndarray | None = None,
) -> dict[str, float]:
    if artifact.kind == ArtifactKind.TORCH:
        return measure_torch(artifact, source, data, task)
    return measure_onnx(artifact, data, settings, task, reference_outputs)
