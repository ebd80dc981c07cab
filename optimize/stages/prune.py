"""Structured channel pruning with torch-pruning's dependency graph: channels coupled by residual
additions and concatenations are removed together, so the pruned model stays consistent."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from optimize.artifacts import ArtifactKind
from optimize.errors import StageError
from optimize.registries import STAGES
from optimize.stages.base import Location, Stage, StageContext, StageOutput, StageParams, model_skeleton

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optimize.recipe.schema import Recipe

TARGETS = ("channel_ratio", "target_macs", "target_params")


def unmatched_patterns(model: nn.Module, patterns: list[str]) -> list[str]:
    """Module names or globs that name no module of `model`."""
    names = [name for name, _ in model.named_modules() if name]
    return [p for p in patterns if not any(fnmatch.fnmatchcase(name, p) for name in names)]


class PruneParams(StageParams):
    channel_ratio: float | None = Field(
        None, gt=0, lt=1, description="share of channels to remove (one of the three targets)"
    )
    target_macs: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep this share of the input model's MACs, e.g. 0.25 (stepping until met)",
    )
    target_params: float | None = Field(
        None, gt=0, lt=1, description="keep this share of the input model's parameters"
    )
    tolerance: float = Field(
        0.05, gt=0, lt=1, description="a MACs/params target is met when within this relative margin below it"
    )
    importance: Literal["l1", "l2", "taylor", "bn_scale", "lamp"] = Field(
        "l2",
        description="channel ranking: weight magnitude, taylor (gradients on data.train), BN scale or LAMP",
    )
    global_pruning: bool = Field(False, description="rank channels across all layers instead of per layer")
    iterative_steps: PositiveInt | None = Field(
        None,
        le=10_000,
        description="pruning steps, importance re-estimated between them; default 1 with channel_ratio, 200 "
        "towards a target (each step then removes at most max_channel_ratio/steps of the channels)",
    )
    round_to: PositiveInt = Field(
        8, le=1024, description="keep channel counts multiples of this (SIMD-friendly)"
    )
    max_channel_ratio: float = Field(
        0.9, gt=0, le=1, description="no layer loses more than this share of its channels"
    )
    ignored_layers: list[str] = Field(
        default_factory=list, description="module names or globs never pruned; the output layer always is"
    )
    taylor_samples: PositiveInt = Field(
        256, le=100_000, description="training samples whose loss gradients rank channels (taylor)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> PruneParams:
        given = [name for name in TARGETS if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "prune_target",
                "give exactly one of channel_ratio, target_macs, target_params (got {got})",
                {"got": ", ".join(given) or "none", "at": given[1] if len(given) > 1 else "channel_ratio"},
            )
        if self.channel_ratio is not None and self.channel_ratio > self.max_channel_ratio:
            raise PydanticCustomError(
                "prune_target",
                "channel_ratio {ratio} is above max_channel_ratio {cap}",
                {"ratio": self.channel_ratio, "cap": self.max_channel_ratio, "at": "channel_ratio"},
            )
        return self

    @property
    def target(self) -> tuple[str, float] | None:
        """('macs' | 'params', share to keep), or None for a plain channel ratio."""
        if self.target_macs is not None:
            return "macs", self.target_macs
        if self.target_params is not None:
            return "params", self.target_params
        return None

    @property
    def steps(self) -> int:
        return self.iterative_steps or (1 if self.target is None else 200)


@dataclass
class PruneReport:
    before: dict[str, float]
    after: dict[str, float]
    steps: int
    channels: dict[str, list[int]] = field(default_factory=dict)  # layer → [before, after]
    ignored: list[str] = field(default_factory=list)


def output_layer(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> str | None:
    """The last Linear/Conv to run in a forward pass: the layer whose channels are the output."""
    import torch
    from torch import nn

    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
    ]
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return order[-1] if order else None


def channel_counts(model: nn.Module) -> dict[str, int]:
    from torch import nn

    counts = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            counts[name] = module.out_channels
        elif isinstance(module, nn.Linear):
            counts[name] = module.out_features
    return counts


def make_importance(kind: str):
    import torch_pruning as tp

    return {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "bn_scale": lambda: tp.importance.BNScaleImportance(),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
    }[kind]()


def size_of(model: nn.Module, example_inputs) -> dict[str, float]:
    from optimize.torch_io import count_macs_and_params

    macs, params = count_macs_and_params(model, example_inputs)
    return {"params": float(params), **({"macs": float(macs)} if macs is not None else {})}


def accumulate_gradients(model: nn.Module, batches: list) -> None:
    """Loss gradients for taylor importance; eval mode so BatchNorm statistics stay as trained."""
    import torch
    import torch.nn.functional as F

    from optimize.training import call_model

    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for inputs, labels in batches:
            F.cross_entropy(call_model(model, inputs), labels).backward()


def kept_layers(model: nn.Module, patterns: list[str], example_inputs) -> list[str]:
    """Layers never pruned: those ignored_layers names plus the output layer (its channels are
    the model's outputs, e.g. the classes)."""
    names = {
        name
        for name, _ in model.named_modules()
        if name and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    }
    return sorted(names | ({output_layer(model, example_inputs)} - {None}))


def make_pruner(model: nn.Module, params: PruneParams, example_inputs, kept: list[str]):
    """A torch-pruning pruner; towards a target its ratio schedule runs to max_channel_ratio and
    the caller stops stepping once the target is met."""
    import torch_pruning as tp

    modules = dict(model.named_modules())
    return tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=make_importance(params.importance),
        global_pruning=params.global_pruning,
        pruning_ratio=params.channel_ratio if params.target is None else params.max_channel_ratio,
        max_pruning_ratio=params.max_channel_ratio,
        iterative_steps=params.steps,
        ignored_layers=[modules[name] for name in kept],
        round_to=params.round_to,
    )


def prune_model(
    model: nn.Module,
    params: PruneParams,
    example_inputs: tuple[torch.Tensor, ...],
    gradient_batches: list | None = None,
    advance=lambda **_: None,
) -> PruneReport:
    """Prune `model` in place: `params.steps` steps for a channel ratio, or steps until the
    MACs/parameter target is met. Raises ValueError when a target cannot be met."""
    model.eval()
    target = params.target
    before = size_of(model, example_inputs)
    if target is not None and target[0] not in before:
        raise ValueError("the MACs counter cannot follow this model; use channel_ratio or target_params")
    channels_before = channel_counts(model)
    kept_names = kept_layers(model, params.ignored_layers, example_inputs)
    pruner = make_pruner(model, params, example_inputs, kept_names)
    kept = 1.0
    for _ in range(params.steps):
        if params.importance == "taylor":
            accumulate_gradients(model, gradient_batches or [])
        pruner.step()
        if target is not None:
            kept = size_of(model, example_inputs)[target[0]] / before[target[0]]
            advance(status=f"{target[0]} kept {kept:.3f}")
            if kept <= target[1]:
                break
        else:
            advance()
    model.zero_grad(set_to_none=True)
    if target is not None:
        check_target_met(target, kept, params)
    counts = channel_counts(model)
    return PruneReport(
        before=before,
        after=size_of(model, example_inputs),
        steps=pruner.current_step,
        ignored=kept_names,
        channels={name: [channels_before[name], counts[name]] for name in counts},
    )


def check_target_met(target: tuple[str, float], kept: float, params: PruneParams) -> None:
    what, share = target
    if kept > share:
        raise ValueError(
            f"target_{what} {share}: stopped at {kept:.3f} of the {what} after {params.steps} steps; no layer may "
            f"lose more than max_channel_ratio {params.max_channel_ratio} of its channels (raise it, or ignore fewer layers)"
        )
    if kept < share * (1 - params.tolerance):
        raise ValueError(
            f"target_{what} {share}: the last step overshot to {kept:.3f} (more than {params.tolerance:.0%} below); "
            "use global_pruning: true, a smaller round_to or more iterative_steps for finer steps"
        )


@STAGES.register("prune")
class PruneStage(Stage):
    """Structured pruning (torch-pruning): remove whole channels by a channel ratio or until a MACs
    or parameter target is met; residual and concatenated channels stay consistent."""

    Params = PruneParams
    consumes = ArtifactKind.TORCH
    produces = ArtifactKind.TORCH
    libraries = ("torch", "torch-pruning")
    compresses = True

    @classmethod
    def roles_read(cls, params: PruneParams) -> tuple[str, ...]:
        return ("train",) if params.importance == "taylor" else ()

    @classmethod
    def check(
        cls, params: PruneParams, recipe: Recipe, index: int, base_dir: Path
    ) -> list[tuple[Location, str]]:
        here = ("stages", index, "prune")
        problems = []
        if params.importance == "taylor" and recipe.model.task != "classification":
            problems.append(
                ((*here, "importance"), "taylor importance needs a classification model (a loss on labels)")
            )
        if params.ignored_layers:
            model = model_skeleton(recipe.model, base_dir)
            for pattern in unmatched_patterns(model, params.ignored_layers) if model is not None else []:
                problems.append(((*here, "ignored_layers"), f"'{pattern}' matches no layer of the model"))
        return problems

    def run(self, params: PruneParams, context: StageContext) -> StageOutput:
        model = context.load_torch()
        missing = unmatched_patterns(model, params.ignored_layers)
        if missing:
            raise StageError(context.step_id, f"ignored_layers: '{missing[0]}' matches no layer of the model")
        batches = self._gradient_batches(params, context) if params.importance == "taylor" else None
        with context.progress.task(f"{context.step_id}: pruning steps", params.steps) as advance:
            try:
                report = prune_model(
                    model, params, context.model_source.example_inputs(batch=1), batches, advance
                )
            except ValueError as exc:
                raise StageError(context.step_id, str(exc)) from exc
        context.save_torch(model)
        return StageOutput(metrics=report_metrics(report), info=report_info(report))

    @staticmethod
    def _gradient_batches(params: PruneParams, context: StageContext) -> list:
        """A fixed few training batches, reused at every step so the ranking only moves with the pruning."""
        batches, seen = [], 0
        for inputs, labels in context.data.loader("train", min(64, params.taylor_samples), shuffle=True):
            batches.append((inputs, labels))
            seen += len(labels)
            if seen >= params.taylor_samples:
                break
        return batches


def report_metrics(report: PruneReport) -> dict[str, float]:
    metrics = {"pruning_steps": float(report.steps)}
    for what, name in (("macs", "macs"), ("params", "parameters")):
        if what in report.before and what in report.after:
            metrics[f"{name}_before"] = report.before[what]
            metrics[f"{name}_after"] = report.after[what]
            metrics[f"{name}_kept"] = report.after[what] / report.before[what]
    return metrics


def report_info(report: PruneReport) -> dict[str, Any]:
    return {"channels": report.channels, "ignored_layers": report.ignored}
