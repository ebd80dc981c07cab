"""Structured channel pruning with torch-pruning's dependency graph: channels coupled by residual
additions and concatenations are removed together, so the pruned model stays consistent.

Channels are ranked once, on the unpruned model, and the model is pruned once. Towards a MACs or
parameter target a bisection over the channel ratio finds the smallest ratio that meets it: each
candidate ratio is pruned on a copy and counted by the same counter as the report, with no new
ranking. Pruning with that ratio as `channel_ratio` gives the same model.

`iterative_steps` keeps torch-pruning's stepping, ranking again between steps, for rankings that
move as the model shrinks (taylor's gradients, LAMP's per-layer normalisation). It is an option,
not the default: on recipes/resnet18-digits-prune.yaml the search reaches 24.6 % of the MACs in
about 1.3 s, where iterative_steps: 100 stopped after 86 steps and 8-36 s (at 24.2 %), and after
the recipe's distillation it is no worse (97.9 % against 97.7 % accuracy, mean of 8 seeds)."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from optimize.artifacts import ArtifactKind
from optimize.channel_search import RankedGroup, Search, least_kept, removal_plan, search_ratio, search_steps
from optimize.errors import StageError
from optimize.models.freeze import unmatched_patterns
from optimize.registries import STAGES
from optimize.stages.base import Location, Stage, StageContext, StageOutput, StageParams, model_skeleton

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optimize.recipe.schema import Recipe

TARGETS = ("channel_ratio", "target_macs", "target_params")

# task(description, total) yields advance(n=1, status=""): Progress.task without the step's name.
Task = Callable[[str, int | None], contextlib.AbstractContextManager[Callable[..., None]]]
# One training batch's loss for a model: taylor importance sums their gradients.
BatchLoss = Callable[["nn.Module"], "torch.Tensor"]


class PruneParams(StageParams):
    channel_ratio: float | None = Field(
        None, gt=0, lt=1, description="share of channels to remove (one of the three targets)"
    )
    target_macs: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep this share of the input model's MACs, e.g. 0.25: a search finds the smallest "
        "channel ratio that meets it (reported as the step's channel_ratio)",
    )
    target_params: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep this share of the input model's parameters (found by the same search)",
    )
    tolerance: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="a MACs/params target is met when within this relative margin below it; coarser "
        "steps (round_to, per-layer pruning) that jump past that margin are an error",
    )
    importance: Literal["l1", "l2", "taylor", "bn_scale", "lamp"] = Field(
        "l2",
        description="channel ranking: weight magnitude, taylor (gradients on data.train), BN scale or LAMP",
    )
    global_pruning: bool = Field(False, description="rank channels across all layers instead of per layer")
    iterative_steps: PositiveInt | None = Field(
        None,
        le=10_000,
        description="prune in this many steps instead of once, ranking the channels again between them "
        "(taylor: fresh gradients on the shrinking model); towards a target, step until it is met "
        "instead of the search, each step removing max_channel_ratio/steps of the channels and costing "
        "a ranking and a count. Default: rank once, prune once",
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
        return self.iterative_steps or 1

    @property
    def iterative(self) -> bool:
        return self.steps > 1


@dataclass
class PruneReport:
    before: dict[str, float]
    after: dict[str, float]
    channel_ratio: float  # as given, found by the search, or where stepping stopped
    steps: int = 1  # times the channels were ranked and the model pruned
    search_iterations: int = 0  # candidate ratios the search tried (each pruned on a copy and counted)
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


def accumulate_gradients(model: nn.Module, batches: list[BatchLoss]) -> None:
    """Loss gradients for taylor importance; eval mode so BatchNorm statistics stay as trained."""
    import torch

    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for loss in batches:
            loss(model).backward()


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
    """A torch-pruning pruner: its dependency graph and channel groups rank channels once, or it
    steps through iterative_steps; towards a target its ratio schedule runs to max_channel_ratio
    and the caller stops stepping once the target is met."""
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


def rank_channels(
    model: nn.Module,
    params: PruneParams,
    example_inputs,
    kept: list[str],
    gradient_batches: list[BatchLoss] | None = None,
) -> list[RankedGroup]:
    """Every group of coupled channels the pruner may prune, ranked by params.importance on the
    model as it is (taylor: the gradients of gradient_batches, taken once)."""
    import torch

    pruner = make_pruner(model, params, example_inputs, kept)
    names = {module: name for name, module in model.named_modules()}
    ranked = []
    try:
        if params.importance == "taylor":
            accumulate_gradients(model, gradient_batches or [])
        groups = pruner.DG.get_all_groups(
            ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
        )
        for group in groups:
            # The screening and channel grouping of BasePruner._prune (torch-pruning 1.6).
            if not pruner._check_pruning_ratio(group):
                continue
            importance = pruner.estimate_importance(group)
            if importance is None:
                continue
            channel_groups = pruner._get_channel_groups(group)
            importance = importance.detach().view(channel_groups, -1).mean(0).cpu()
            order = torch.argsort(importance, stable=True)
            root = group[0].dep
            ranked.append(
                RankedGroup(
                    root=names[root.target.module],
                    handler=root.handler,
                    importance=importance[order],
                    order=order,
                    min_kept=least_kept(len(order), params.max_channel_ratio, params.round_to),
                    channel_groups=channel_groups,
                )
            )
    finally:
        model.zero_grad(set_to_none=True)
    return ranked


def apply_plan(model: nn.Module, groups: Sequence[RankedGroup], plan: list[int], example_inputs) -> None:
    """Prune `model` in place: plan[i] least important positions of groups[i] (ranked on this
    model or on the one it was copied from), on a dependency graph traced from this model."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    modules = dict(model.named_modules())
    for group, count in zip(groups, plan, strict=True):
        if count:
            coupled = graph.get_pruning_group(modules[group.root], group.handler, group.indices(count))
            if graph.check_pruning_group(coupled):  # as BasePruner: never a layer without channels
                coupled.prune()


def check_target_met(
    target: tuple[str, float], kept: float, params: PruneParams, search: Search | None = None
) -> None:
    """A clear error when pruning as far as allowed keeps too much of the MACs/params, or when
    the step that meets the target lands more than the tolerance below it (`search`: where the
    search ended, with the step before; otherwise the last of iterative_steps)."""
    what, share = target
    if kept > share:
        raise ValueError(
            f"target_{what} {share}: the most pruning allowed keeps {kept:.3f} of the {what}; no layer may lose "
            f"more than max_channel_ratio {params.max_channel_ratio} of its channels (raise it, or ignore fewer layers)"
        )
    if kept >= share * (1 - params.tolerance):
        return
    remedies = [*(["global_pruning: true"] if not params.global_pruning else []), "a smaller round_to"]
    finer = ", ".join(remedies) + (" or a larger tolerance" if search else " or more iterative_steps")
    if search is not None and search.above is not None:
        ratio, above = search.above
        raise ValueError(
            f"target_{what} {share}: channel ratio {ratio:.4f} keeps {above:.3f} of the {what} and the next step, "
            f"{search.ratio:.4f}, overshoots to {kept:.3f}, more than {params.tolerance:.0%} below; use {finer}"
        )
    raise ValueError(
        f"target_{what} {share}: the last step overshot to {kept:.3f} (more than {params.tolerance:.0%} below); "
        f"use {finer}"
    )


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op threads set to one meanwhile."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _no_progress(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    yield lambda n=1, status="": None


def prune_model(
    model: nn.Module,
    params: PruneParams,
    example_inputs: tuple[torch.Tensor, ...],
    gradient_batches: list[BatchLoss] | None = None,
    task: Task = _no_progress,
) -> PruneReport:
    """Prune `model` in place, once at channel_ratio or at the smallest ratio that meets a MACs or
    parameter target (found on copies), or in iterative_steps steps. Raises ValueError when a
    target cannot be met, before touching the model unless it prunes in steps.

    It runs in one thread: its forward passes (tracing, counting) are batch-1 passes too small to
    gain from threads and the first to stall when the cores are busy (ResNet-18 at 32x32 on two
    busy cores: 0.13 s to prune and count a copy in one thread, 0.5-1.3 s in two)."""
    with one_thread():
        return _prune(model, params, example_inputs, gradient_batches, task)


def _prune(model, params: PruneParams, example_inputs, gradient_batches, task: Task) -> PruneReport:
    model.eval()
    target = params.target
    before = size_of(model, example_inputs)
    if target is not None and target[0] not in before:
        raise ValueError("the MACs counter cannot follow this model; use channel_ratio or target_params")
    channels_before = channel_counts(model)
    kept_names = kept_layers(model, params.ignored_layers, example_inputs)
    report = PruneReport(
        before=before, after={}, channel_ratio=params.channel_ratio or 0.0, ignored=kept_names
    )
    if params.iterative:
        report.channel_ratio, report.steps = _prune_in_steps(
            model, params, example_inputs, kept_names, before, gradient_batches, task
        )
    else:
        groups = rank_channels(model, params, example_inputs, kept_names, gradient_batches)
        if target is not None:
            found = _search(model, params, example_inputs, groups, before, task)
            report.channel_ratio, report.search_iterations = found.ratio, found.iterations
        with task("pruning", 1) as advance:
            plan = removal_plan(groups, report.channel_ratio, params.global_pruning, params.round_to)
            apply_plan(model, groups, plan, example_inputs)
            advance()
    report.after = size_of(model, example_inputs)
    counts = channel_counts(model)
    report.channels = {name: [channels_before[name], counts[name]] for name in counts}
    return report


def _search(
    model: nn.Module,
    params: PruneParams,
    example_inputs,
    groups: list[RankedGroup],
    before: dict[str, float],
    task: Task,
) -> Search:
    """search_ratio with each candidate pruned on a copy and counted; candidates whose plans
    coincide (round_to makes many do) are counted once."""
    what, share = params.target
    resolution = max(1, sum(group.size for group in groups))  # no prunable channel: 1, at ratio 0
    counted: dict[tuple[int, ...], float] = {}
    total = search_steps(resolution, params.max_channel_ratio)
    with task("channel ratio search", total) as advance:

        def kept_at(ratio: float) -> float:
            plan = tuple(removal_plan(groups, ratio, params.global_pruning, params.round_to))
            if plan not in counted:
                trial = copy.deepcopy(model)
                apply_plan(trial, groups, list(plan), example_inputs)
                counted[plan] = size_of(trial, example_inputs)[what] / before[what]
            advance(status=f"ratio {ratio:.3f}: {what} kept {counted[plan]:.3f}")
            return counted[plan]

        found = search_ratio(kept_at, share, params.max_channel_ratio, resolution)
    check_target_met(params.target, found.kept, params, found)
    return found


def _prune_in_steps(
    model: nn.Module,
    params: PruneParams,
    example_inputs,
    kept_names: list[str],
    before: dict[str, float],
    gradient_batches: list[BatchLoss] | None,
    task: Task,
) -> tuple[float, int]:
    """torch-pruning's iterative schedule, ranking before every step; towards a target, stepping
    stops once it is met. Returns the schedule's ratio where it stopped and the steps taken."""
    target = params.target
    pruner = make_pruner(model, params, example_inputs, kept_names)
    kept = 1.0
    with task("pruning steps", params.steps) as advance:
        for _ in range(params.steps):
            if params.importance == "taylor":
                accumulate_gradients(model, gradient_batches or [])
            pruner.step()
            if target is None:
                advance()
                continue
            kept = size_of(model, example_inputs)[target[0]] / before[target[0]]
            advance(status=f"{target[0]} kept {kept:.3f}")
            if kept <= target[1]:
                break
    model.zero_grad(set_to_none=True)
    if target is not None:
        check_target_met(target, kept, params)
    return pruner.per_step_pruning_ratio[pruner.current_step], pruner.current_step


@STAGES.register("prune")
class PruneStage(Stage):
    """Structured pruning (torch-pruning): remove whole channels by a channel ratio or at the
    smallest ratio that meets a MACs or parameter target; residual and concatenated channels
    stay consistent."""

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

        def task(description: str, total: int | None):
            return context.progress.task(f"{context.step_id}: {description}", total)

        try:
            report = prune_model(model, params, context.model_source.example_inputs(batch=1), batches, task)
        except ValueError as exc:
            raise StageError(context.step_id, str(exc)) from exc
        context.save_torch(model)
        return StageOutput(metrics=report_metrics(report), info=report_info(report))

    @staticmethod
    def _gradient_batches(params: PruneParams, context: StageContext) -> list[BatchLoss]:
        """The losses of a fixed few training batches (reused at every step of iterative_steps, so
        the ranking only moves with the pruning)."""
        import torch.nn.functional as F

        io = context.model_source.io
        batches, seen = [], 0
        for inputs, labels in context.data.loader("train", min(64, params.taylor_samples), shuffle=True):
            batches.append(
                lambda model, inputs=inputs, labels=labels: F.cross_entropy(io.call(model, inputs), labels)
            )
            seen += len(labels)
            if seen >= params.taylor_samples:
                break
        return batches


def report_metrics(report: PruneReport) -> dict[str, float]:
    metrics = {
        "channel_ratio": report.channel_ratio,
        "pruning_steps": float(report.steps),
        "search_iterations": float(report.search_iterations),
    }
    for what, name in (("macs", "macs"), ("params", "parameters")):
        if what in report.before and what in report.after:
            metrics[f"{name}_before"] = report.before[what]
            metrics[f"{name}_after"] = report.after[what]
            metrics[f"{name}_kept"] = report.after[what] / report.before[what]
    return metrics


def report_info(report: PruneReport) -> dict[str, Any]:
    return {"channels": report.channels, "ignored_layers": report.ignored}
