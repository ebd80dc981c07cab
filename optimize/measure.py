"""The numbers recorded for every step's output: size, parameters, MACs and eval accuracy (for
ONNX models also agreement with the FP32 reference). MACs are counted per model kind (torch:
torch-pruning's counter, which also counts BatchNorm, activations and biases; ONNX: multiply-
accumulates of the graph's Conv/Gemm/MatMul ops); a count that cannot be made is left out. Torch and ONNX steps score the same eval
samples (data.eval capped at evaluation.max_samples): ONNX models read them from the eval feeds
file the targets are scored on too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optimize.artifacts import Artifact, ArtifactKind

if TYPE_CHECKING:
    import numpy as np

    from optimize.data.provider import DataProvider
    from optimize.model_io import ModelIO
    from optimize.models.base import ModelSource

MB = 1_000_000
LIBRARIES = ("torch", "torch-pruning", "onnx", "onnxruntime")  # what the measurements call


def measure_torch(artifact: Artifact, source: ModelSource, data: DataProvider, task: str) -> dict[str, float]:
    from optimize.torch_io import count_macs_and_params, load_into
    from optimize.training import accuracy

    model = load_into(source.build(pretrained=False), artifact.file)
    macs, params = count_macs_and_params(model, source.example_inputs(batch=1))
    metrics = {"size_mb": artifact.size_bytes / MB, "parameters": float(params)}
    if macs is not None:
        metrics["macs"] = float(macs)
    if task == "classification" and data.has("eval") and data.labeled("eval"):
        metrics["accuracy"] = accuracy(model, data.loader("eval", 256), source.io)
    return metrics


def onnx_outputs(
    model_file: Path, feeds_file: Path, batch_size: int, io: ModelIO
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """An ONNX model's outputs by name over the eval feeds, through ONNX Runtime on this CPU, and
    the labels (-1 where unlabelled)."""
    from optimize.evaluation import read_feeds, run_batched
    from optimize.runtimes.onnxruntime import OnnxRuntimeRunner, OnnxRuntimeSettings

    inputs, labels = read_feeds(feeds_file)
    runner = OnnxRuntimeRunner(model_file, threads=None, settings=OnnxRuntimeSettings())
    return io.named(run_batched(runner, inputs, batch_size)), labels


def measure_onnx(
    artifact: Artifact,
    feeds_file: Path | None,
    batch_size: int,
    task: str,
    labeled: bool,
    io: ModelIO,
    reference_outputs: dict[str, np.ndarray] | None,
) -> dict[str, float]:
    import onnx

    from optimize.evaluation import output_metrics
    from optimize.onnx_macs import onnx_macs
    from optimize.onnx_tools import weight_stats

    model = onnx.load(str(artifact.file))
    metrics = {"size_mb": artifact.size_bytes / MB, **weight_stats(model)}
    macs = onnx_macs(
        model, input_shapes=artifact.input_shapes
    )  # counted on the graph; None (unknown) is left out
    if macs is not None:
        metrics["macs"] = float(macs)
    if feeds_file is not None:
        outputs, labels = onnx_outputs(artifact.file, feeds_file, batch_size, io)
        references = {"fp32": reference_outputs} if reference_outputs is not None else {}
        metrics.update(output_metrics(outputs, io.eval_output, labels, references, task, labeled))
    return metrics


def measure(
    artifact: Artifact,
    source: ModelSource,
    data: DataProvider,
    feeds_file: Path | None,
    batch_size: int,
    task: str,
    reference_outputs: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    if artifact.kind == ArtifactKind.TORCH:
        return measure_torch(artifact, source, data, task)
    labeled = data.has("eval") and data.labeled("eval")
    return measure_onnx(artifact, feeds_file, batch_size, task, labeled, source.io, reference_outputs)
