"""Cross-entropy training or fine-tuning of the current torch model on data.train."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from optimize.artifacts import ArtifactKind
from optimize.registries import STAGES
from optimize.stages.base import Location, Stage, StageContext, StageOutput
from optimize.training import TrainingParams, fit, training_cache_extra, training_problems

if TYPE_CHECKING:
    from optimize.recipe.schema import Recipe


class TrainParams(TrainingParams):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")


@STAGES.register("train")
class TrainStage(Stage):
    """Train or fine-tune the model with cross-entropy on data.train; early stopping and
    best-epoch selection use data.eval when the recipe has it."""

    Params = TrainParams
    consumes = ArtifactKind.TORCH
    produces = ArtifactKind.TORCH
    data_roles = ("train",)

    @classmethod
    def check(
        cls, params: TrainParams, recipe: Recipe, index: int, base_dir: Path
    ) -> list[tuple[Location, str]]:
        return training_problems(params, recipe, ("stages", index, "train"), base_dir)

    def cache_extra(self, params: TrainParams, context: StageContext) -> dict[str, Any]:
        return training_cache_extra(params, context)

    def run(self, params: TrainParams, context: StageContext) -> StageOutput:
        import torch.nn.functional as F

        model = context.load_torch()
        result = fit(
            model,
            params,
            context,
            lambda inputs, labels: F.cross_entropy(
                context.model_source.io.call(model, inputs), labels, label_smoothing=params.label_smoothing
            ),
            params.setup(context, model),
        )
        context.save_torch(model)
        return result.stage_output()
