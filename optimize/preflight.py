"""Checks before any work: fail in seconds, not after training, when the data cannot fit the
model (wrong input shapes, checked as each role loads, or labels beyond the classifier's outputs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optimize.artifacts import Artifact, ArtifactKind
from optimize.errors import RecipeError

if TYPE_CHECKING:
    from optimize.data.provider import DataProvider
    from optimize.models.base import ModelSource


def check_data_fits_model(source: Artifact, model_source: ModelSource, data: DataProvider, task: str) -> None:
    if task != "classification":
        return
    roles = [r for r in ("train", "eval") if data.has(r) and data.labeled(r)]
    if not roles:
        return
    from optimize.data.provider import check_outputs_fit_labels, dataset_labels

    inputs, _ = next(iter(data.loader(roles[0], 2)))
    if source.kind == ArtifactKind.TORCH:
        import torch

        from optimize.torch_io import load_into

        with torch.inference_mode():
            outputs = model_source.io.call(load_into(model_source.build(pretrained=False), source.file), inputs)
    else:
        from optimize.onnx_tools import session

        outputs = model_source.io.scored(session(source.file).run(None, model_source.io.feeds(inputs)))
    if len(outputs.shape) != 2:
        raise RecipeError(
            f"model: a classifier must output [batch, classes], this one outputs shape {list(outputs.shape)}; "
            "use task: embedding for other outputs"
        )
    for role in roles:
        check_outputs_fit_labels(role, int(outputs.shape[1]), dataset_labels(data.dataset(role)))
