"""Knowledge distillation into the current model from a teacher: an earlier step's model (by
default the one before the first prune) or a separate model source. Recovers the accuracy that
pruning removed faster than plain fine-tuning, because the teacher's soft labels carry more
information per sample than the hard labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from optimize.artifacts import ArtifactKind
from optimize.errors import StageError
from optimize.recipe.base import Slug
from optimize.recipe.model_spec import ModelSpec
from optimize.registries import STAGES
from optimize.registry import did_you_mean
from optimize.stages.base import Location, Stage, StageContext, StageOutput, model_skeleton
from optimize.training import TrainingParams, fit, training_cache_extra, training_problems

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optimize.recipe.schema import Recipe


class DistillParams(TrainingParams):
    teacher: Slug | None = Field(
        None,
        description="id (or stage type) of an earlier step whose model teaches, or 'source'; "
        "default: the model before the first prune step (else the last train step)",
    )
    teacher_model: ModelSpec | None = Field(
        None, description="a separate teacher, written like the recipe's model: section"
    )
    temperature: float = Field(
        4.0, gt=0, le=100, description="softens both output distributions before the KL term"
    )
    alpha: float = Field(
        0.7, ge=0, le=1, description="weight of the T²·KL soft-label term; 1 − alpha weights cross-entropy"
    )
    feature_layers: dict[str, str] = Field(
        default_factory=dict,
        description="student layer → teacher layer whose outputs are matched by MSE "
        "(a learned 1×1 projection bridges channel counts changed by pruning)",
    )
    feature_weight: float = Field(1.0, ge=0, le=1000, description="weight of the feature MSE terms")

    @model_validator(mode="after")
    def _one_teacher(self) -> DistillParams:
        if self.teacher is not None and self.teacher_model is not None:
            raise PydanticCustomError(
                "distill_teacher",
                "give either teacher (an earlier step) or teacher_model, not both",
                {"at": "teacher"},
            )
        return self


def teacher_step(params: DistillParams, recipe: Recipe, index: int) -> str | None:
    """The id of the step whose output teaches ('source' for the start model); None with
    teacher_model, or when the recipe offers no teacher."""
    if params.teacher_model is not None:
        return None
    if params.teacher is not None:
        return params.teacher
    ids = recipe.step_ids()
    first_prune = next((i for i, step in enumerate(recipe.stages[:index]) if step.stage == "prune"), None)
    if first_prune is not None:
        return ids[first_prune - 1] if first_prune > 0 else "source"
    last_train = next((i for i in reversed(range(index)) if recipe.stages[i].stage == "train"), None)
    return ids[last_train] if last_train is not None else None


def step_problem(name: str, recipe: Recipe, index: int) -> str | None:
    """Why step `name` cannot teach the step at `index`, or None."""
    from optimize.registries import MODEL_SOURCES

    ids = recipe.step_ids()
    if name == "source":
        kind = MODEL_SOURCES.get(recipe.model.kind).artifact_kind
    elif name in ids[:index]:
        kind = STAGES.get(recipe.stages[ids.index(name)].stage).produces
    elif name in ids:
        return f"step '{name}' comes at or after this distill step (step {ids.index(name)}); a teacher must run before"
    else:
        return f"no step '{name}'{did_you_mean(name, ['source', *ids[:index]])}; earlier steps: {', '.join(['source', *ids[:index]])}"
    if kind != ArtifactKind.TORCH:
        return f"step '{name}' leaves a {kind.value} model; a teacher must be a torch model"
    return None


def kd_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float) -> torch.Tensor:
    """alpha·T²·KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − alpha)·cross-entropy."""
    import torch.nn.functional as F

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


class FeatureMatcher:
    """Captures named layer outputs of student and teacher with forward hooks and scores their
    MSE through learned projections (1×1 conv for feature maps, linear for vectors)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, pairs: dict[str, str], example_inputs):
        import torch
        from torch import nn

        self.pairs = list(pairs.items())
        self.outputs: dict[tuple[str, str], torch.Tensor] = {}
        self.handles = [
            *(
                dict(student.named_modules())[s].register_forward_hook(self._keep(("student", s)))
                for s, _ in self.pairs
            ),
            *(
                dict(teacher.named_modules())[t].register_forward_hook(self._keep(("teacher", t)))
                for _, t in self.pairs
            ),
        ]
        with torch.no_grad():
            student.eval()
            student(*example_inputs)
            teacher(*example_inputs)
        self.projections = nn.ModuleList(self._projection(s, t) for s, t in self.pairs)

    def _keep(self, key):
        def hook(module, inputs, output):
            self.outputs[key] = output

        return hook

    def _projection(self, student_layer: str, teacher_layer: str) -> nn.Module:
        from torch import nn

        s, t = self.outputs[("student", student_layer)], self.outputs[("teacher", teacher_layer)]
        if s.dim() != t.dim() or s.shape[2:] != t.shape[2:]:
            raise ValueError(
                f"feature_layers {student_layer} → {teacher_layer}: output shapes {list(s.shape)} and {list(t.shape)} "
                "differ beyond the channel axis"
            )
        if s.shape[1] == t.shape[1]:
            return nn.Identity()
        if s.dim() == 2:
            return nn.Linear(s.shape[1], t.shape[1], bias=False)
        return getattr(nn, f"Conv{s.dim() - 2}d")(s.shape[1], t.shape[1], kernel_size=1, bias=False)

    def loss(self) -> torch.Tensor:
        import torch.nn.functional as F

        return sum(
            F.mse_loss(projection(self.outputs[("student", s)]), self.outputs[("teacher", t)])
            for projection, (s, t) in zip(self.projections, self.pairs, strict=True)
        )

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.outputs.clear()


@STAGES.register("distill")
class DistillStage(Stage):
    """Knowledge distillation on data.train: alpha·T²·KL to the teacher's softened outputs plus
    (1 − alpha)·cross-entropy, optionally matching named layer features; training loop as `train`."""

    Params = DistillParams
    consumes = ArtifactKind.TORCH
    produces = ArtifactKind.TORCH
    data_roles = ("train",)
    compresses = True

    @classmethod
    def check(
        cls, params: DistillParams, recipe: Recipe, index: int, base_dir: Path
    ) -> list[tuple[Location, str]]:
        from optimize.registries import MODEL_SOURCES

        here = ("stages", index, "distill")
        if recipe.model.task != "classification":
            return [(here, "distillation matches class outputs; it needs a classification model")]
        if params.teacher_model is not None:
            kind = MODEL_SOURCES.get(params.teacher_model.kind).artifact_kind
            if kind != ArtifactKind.TORCH:
                return [
                    ((*here, "teacher_model", "source"), f"a teacher must be a torch model, not {kind.value}")
                ]
        else:
            name = teacher_step(params, recipe, index)
            if name is None:
                return [
                    (
                        (*here, "teacher"),
                        "no teacher: put a prune or train step before distill, name an earlier "
                        "step in 'teacher', or give 'teacher_model'",
                    )
                ]
            problem = step_problem(name, recipe, index)
            if problem:
                return [((*here, "teacher"), problem)]
        return cls._feature_problems(params, recipe, here, base_dir) + training_problems(
            params, recipe, here, base_dir
        )

    @staticmethod
    def _feature_problems(
        params: DistillParams, recipe: Recipe, here: Location, base_dir: Path
    ) -> list[tuple[Location, str]]:
        if not params.feature_layers:
            return []
        student = model_skeleton(recipe.model, base_dir)
        teacher = model_skeleton(params.teacher_model, base_dir) if params.teacher_model else student
        problems = []
        for model, names, side in (
            (student, params.feature_layers.keys(), "student"),
            (teacher, params.feature_layers.values(), "teacher"),
        ):
            layers = dict(model.named_modules()) if model is not None else {}
            problems += [
                ((*here, "feature_layers"), f"'{name}' is no layer of the {side} model")
                for name in names
                if layers and name not in layers
            ]
        return problems

    def cache_extra(self, params: DistillParams, context: StageContext) -> dict[str, Any]:
        if params.teacher_model is not None:
            from optimize.hashing import hash_value
            from optimize.models.base import open_source

            teacher = hash_value(
                open_source(params.teacher_model, context.model_source.base_dir).fingerprint()
            )
        else:
            teacher = context.earlier[self._teacher_step(params, context)].hash
        return {"teacher": teacher, **training_cache_extra(params, context)}

    @staticmethod
    def _teacher_step(params: DistillParams, context: StageContext) -> str:
        index = context.recipe.step_ids().index(context.step_id)
        return teacher_step(params, context.recipe, index)

    def _teacher(self, params: DistillParams, context: StageContext) -> nn.Module:
        if params.teacher_model is not None:
            from optimize.models.base import open_source

            return open_source(params.teacher_model, context.model_source.base_dir).pretrained()
        return context.load_torch(context.earlier[self._teacher_step(params, context)])

    @staticmethod
    def _check_outputs_match(student: nn.Module, teacher: nn.Module, context: StageContext) -> None:
        import torch

        example = context.model_source.example_inputs(batch=2)
        with torch.no_grad():
            io = context.model_source.io
            ours, theirs = io.scored(student(*example)).shape, io.scored(teacher(*example)).shape
        if ours != theirs:
            raise StageError(
                context.step_id,
                f"the teacher's output has shape {list(theirs)} but the student's {list(ours)}; "
                "both must predict the same classes",
            )

    def run(self, params: DistillParams, context: StageContext) -> StageOutput:
        student = context.load_torch()
        teacher = self._teacher(params, context).eval().requires_grad_(False)
        self._check_outputs_match(student, teacher, context)
        features = None
        if params.feature_layers:
            try:
                features = FeatureMatcher(
                    student, teacher, params.feature_layers, context.model_source.example_inputs(batch=2)
                )
            except ValueError as exc:
                raise StageError(context.step_id, str(exc)) from exc

        io = context.model_source.io
        setup = params.setup(context, student)
        setup.place(teacher)  # fit places the student and the projections

        def batch_loss(inputs, labels):
            import torch

            with torch.no_grad():
                teacher_logits = io.call(teacher, inputs)
            loss = kd_loss(io.call(student, inputs), teacher_logits, labels, params.temperature, params.alpha)
            return loss + params.feature_weight * features.loss() if features else loss

        try:
            result = fit(
                student, params, context, batch_loss, setup, [features.projections] if features else None
            )
        finally:
            if features:
                features.close()
        context.save_torch(student)
        return result.stage_output()
