"""Checks that span several parts of a recipe (the schema checks each part on its own).

Each returns (location, message) pairs so the loader can point at the line in the file.
"""

from __future__ import annotations

from pathlib import Path

from optimize.artifacts import ArtifactKind
from optimize.gates import GATE_METRICS
from optimize.recipe.schema import Recipe
from optimize.registries import MODEL_SOURCES, STAGES
from optimize.registry import did_you_mean
from optimize.targets import device_classes_for

Problem = tuple[tuple, str]


def recipe_problems(recipe: Recipe, base_dir: Path) -> list[Problem]:
    return [
        *_artifact_chain(recipe),
        *_data_roles(recipe),
        *_step_ids(recipe),
        *_targets(recipe),
        *_gates(recipe),
        *_stage_specific(recipe, base_dir),
    ]


def first_compression(stages: list) -> int | None:
    """Index of the first compression step (prune, distill, quantize), or None: the model that
    enters it is the original every target is compared with."""
    return next((i for i, step in enumerate(stages) if STAGES.get(step.stage).compresses), None)


def final_precision(recipe: Recipe) -> str:
    precision = "fp32"
    for step in recipe.stages:
        precision = STAGES.get(step.stage).precision_after(step, precision)
    return precision


def _artifact_chain(recipe: Recipe) -> list[Problem]:
    problems = []
    kind = MODEL_SOURCES.get(recipe.model.kind).artifact_kind
    after = f"model source '{recipe.model.kind}:'"
    for index, step in enumerate(recipe.stages):
        stage = STAGES.get(step.stage)
        if stage.consumes != kind:
            hint = (
                "put PyTorch stages before 'export'"
                if kind == ArtifactKind.ONNX
                else "add an 'export' step first"
            )
            problems.append(
                (
                    ("stages", index, step.stage),
                    f"'{step.stage}' needs a {stage.consumes.value} model, but after {after} "
                    f"the model is {kind.value}; {hint}",
                )
            )
        kind = stage.produces
        after = f"'{step.stage}'"
    if recipe.targets and kind != ArtifactKind.ONNX:
        problems.append(
            (
                ("targets",),
                f"targets are built from an ONNX model, but the last step leaves a {kind.value} model; "
                "add '- export' to the stages",
            )
        )
    return problems


def _data_roles(recipe: Recipe) -> list[Problem]:
    problems = []
    for index, step in enumerate(recipe.stages):
        for role in STAGES.get(step.stage).roles_read(step):
            if getattr(recipe.data, role) is None:
                problems.append(
                    (
                        ("stages", index, step.stage),
                        f"'{step.stage}' reads data.{role}, which the recipe does not define",
                    )
                )
    return problems


def _step_ids(recipe: Recipe) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for index, step_id in enumerate(recipe.step_ids()):
        if step_id == "source":
            problems.append((("stages", index), "the step id 'source' is reserved for the starting model"))
        if step_id in seen:
            problems.append(
                (
                    ("stages", index),
                    f"two steps are called '{step_id}' (steps {seen[step_id]} and {index}); give one an 'id'",
                )
            )
        seen.setdefault(step_id, index)
    return problems


def _targets(recipe: Recipe) -> list[Problem]:
    known = device_classes_for(recipe.device_classes)
    precision = final_precision(recipe)
    problems = []
    for index, name in enumerate(recipe.targets):
        if name not in known:
            problems.append(
                (
                    ("targets", index),
                    f"unknown device class '{name}'{did_you_mean(name, known)}; "
                    f"valid: {', '.join(known)} (or define it under device_classes)",
                )
            )
        elif precision not in known[name].accepted_precisions:
            problems.append(
                (
                    ("targets", index),
                    f"'{name}' does not accept {precision} models; it accepts "
                    f"{', '.join(known[name].accepted_precisions)}",
                )
            )
        if recipe.targets.index(name) != index:
            problems.append((("targets", index), f"'{name}' is listed twice"))
    return problems


def _gates(recipe: Recipe) -> list[Problem]:
    problems = [
        (
            ("gates", "per_target", name),
            f"gate for '{name}', which is not in targets{did_you_mean(name, recipe.targets)}; "
            f"targets: {', '.join(recipe.targets) or 'none'}",
        )
        for name in recipe.gates.per_target
        if name not in recipe.targets
    ]
    missing = missing_baselines(recipe)
    limits = [(("gates",), recipe.gates)]
    limits += [(("gates", "per_target", name), gates) for name, gates in recipe.gates.per_target.items()]
    for where, gates in limits:
        for gate, (metric, _) in GATE_METRICS.items():
            baseline = metric.rpartition("_vs_")[2] if "_vs_" in metric else None
            if getattr(gates, gate) is not None and baseline in missing:
                problems.append(((*where, gate), missing[baseline]))
    return problems


def missing_baselines(recipe: Recipe) -> dict[str, str]:
    """Baselines a recipe cannot have by construction, with why: a comparison gate against one
    could never be measured, so it is refused rather than passed or failed after the run."""
    missing = {}
    if first_compression(recipe.stages) is None:
        missing["original"] = (
            "no prune, distill or quantize step, so the final model is the original model and this gate "
            "cannot be measured; remove it or add a compression step"
        )
    if not any(STAGES.get(step.stage).consumes == ArtifactKind.ONNX for step in recipe.stages):
        missing["fp32"] = (
            "no step changes the model after its first ONNX version (no quantize step), so the final model "
            "is the FP32 baseline and this gate cannot be measured; remove it or add a quantize step"
        )
    return missing


def _stage_specific(recipe: Recipe, base_dir: Path) -> list[Problem]:
    problems = []
    for index, step in enumerate(recipe.stages):
        problems.extend(STAGES.get(step.stage).check(step, recipe, index, base_dir))
    return problems
