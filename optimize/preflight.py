"""Checks before any work that need the data or the model: fail in seconds, not after training,
when the data cannot fit the model (wrong input shapes, checked as each role loads; labels that are
not class indices, or beyond the classifier's outputs).

The pipeline remembers a pass under a key holding the model, the data and this module's code (with
all it imports), so `validate` and `run` share it and any change to what was checked re-runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optimize.artifacts import Artifact, ArtifactKind
from optimize.errors import RecipeError

if TYPE_CHECKING:
    import numpy as np

    from optimize.data.provider import DataProvider
    from optimize.models.base import ModelSource

# Labels read per role to tell their type: a dataset stores its labels as one type.
LABEL_SAMPLE = 256


def check_data_fits_model(source: Artifact, model_source: ModelSource, data: DataProvider, task: str) -> None:
    if task != "classification":
        return
    roles = [r for r in ("train", "eval") if data.has(r) and data.labeled(r)]
    if not roles:
        return
    from optimize.data.provider import check_outputs_fit_labels, dataset_labels

    for role in roles:
        _, labels = next(iter(data.loader(role, LABEL_SAMPLE)))
        check_class_indices(role, labels.numpy())
    inputs, _ = next(iter(data.loader(roles[0], 1)))  # batch 1: what a model with a fixed batch takes
    classes = classifier_classes(model_outputs(source, model_source, inputs).shape)
    for role in roles:
        check_outputs_fit_labels(role, classes, dataset_labels(data.dataset(role)))


def check_class_indices(role: str, labels: np.ndarray) -> None:
    """A classifier learns and is scored on integer class indices: float labels (regression
    targets, or whole numbers stored as floats) would otherwise be cast to classes without a word."""
    if labels.dtype.kind in "iu":
        return
    fractional = labels[labels % 1 != 0] if labels.dtype.kind == "f" else labels[:0]
    example = (fractional if fractional.size else labels)[0]
    kind = "float" if labels.dtype.kind == "f" else str(labels.dtype)
    raise RecipeError(
        f"data.{role}: labels are {kind} (e.g. {example!s}); a classifier needs integer class indices: "
        "use task: embedding for outputs compared to FP32, or cast the labels to integers explicitly"
    )


def classifier_classes(shape) -> int:
    """The classes a classifier's output of this shape scores: it must be [batch, classes]."""
    if len(shape) != 2:
        raise RecipeError(
            f"model: a classifier must output [batch, classes], this one outputs shape {list(shape)}; "
            "use task: embedding for other outputs"
        )
    return int(shape[1])


def model_outputs(source: Artifact, model_source: ModelSource, inputs):
    """The scored output of the start model (PyTorch in eval mode, or ONNX Runtime) for a batch."""
    if source.kind == ArtifactKind.TORCH:
        import torch

        from optimize.torch_io import load_into

        model = load_into(model_source.build(pretrained=False), source.file).eval()
        with torch.inference_mode():
            return model_source.io.call(model, inputs)
    from optimize.onnx_tools import session

    return model_source.io.scored(session(source.file).run(None, model_source.io.feeds(inputs)))
