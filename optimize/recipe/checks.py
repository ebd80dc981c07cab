"""Checks that span several parts of a recipe (the schema checks each part on its own).

Each returns (location, message) pairs so the loader can point at the line in the file.
"""

from __future__ import annotations

from pathlib import Path

from optimize.artifacts import ArtifactKind
from optimize.gates import GATE_METRICS
from optimize.recipe.base import resolve_user_path
from optimize.recipe.schema import Recipe
from optimize.registries import MODEL_SOURCES, STAGES
from optimize.registry import did_you_mean
from optimize.targets import device_classes_for

Problem = tuple[tuple, str]


def recipe_problems(recipe: Recipe, base_dir: Path) -> list[Problem]:
    return [
        *_artifact_chain(recipe),
        *_data_roles(recipe),
        *_training_labels(recipe),
        *_step_ids(recipe),
        *_targets(recipe),
        *_gates(recipe),
        *_fixed_batch(recipe, base_dir),
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


def _training_labels(recipe: Recipe) -> list[Problem]:
    """data.train is what stages learn from: every stage reading it (train, distill, prune's
    taylor importance) computes a loss on its class labels, which unlabelled data (-1) lacks."""
    train = recipe.data.train
    if train is None or train.labeled:
        return []
    return [
        (
            ("stages", index, step.stage),
            f"'{step.stage}' computes a loss on class labels, but data.train ('{train.kind}' data) has none; "
            "use labelled data.train (npz: y_key, python: labeled: true) or remove the step",
        )
        for index, step in enumerate(recipe.stages)
        if "train" in STAGES.get(step.stage).roles_read(step)
    ]


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
    no_accuracy = unmeasured_accuracy(recipe)
    limits = [(("gates",), recipe.gates)]
    limits += [(("gates", "per_target", name), gates) for name, gates in recipe.gates.per_target.items()]
    for where, gates in limits:
        for gate, (metric, _) in GATE_METRICS.items():
            if getattr(gates, gate) is None:  # not set (a default limit is not the recipe's)
                continue
            baseline = metric.rpartition("_vs_")[2] if "_vs_" in metric else None
            why = missing.get(baseline) if baseline else no_accuracy if metric == "accuracy" else None
            if why:
                problems.append(((*where, gate), why))
    return problems


def unmeasured_accuracy(recipe: Recipe) -> str | None:
    """Why the model's accuracy (top-1 on labelled data.eval) cannot be measured, or None: a
    gate on it would fail as 'not measured' after the whole run."""
    eval_data = recipe.data.eval
    instead = "gate on min_agreement or max_accuracy_drop (measured against FP32 outputs) instead"
    if recipe.model.task != "classification":
        return f"accuracy is top-1 on class labels, which a model with task: {recipe.model.task} lacks; {instead}"
    if eval_data is None:
        return (
            "accuracy is measured on data.eval, which the recipe does not define; add it or remove this gate"
        )
    if not eval_data.labeled:
        return (
            f"accuracy is top-1 on class labels, which data.eval ('{eval_data.kind}' data) lacks; "
            f"use labelled data.eval or {instead}"
        )
    return None


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


def _fixed_batch(recipe: Recipe, base_dir: Path) -> list[Problem]:
    """An ONNX source exported with a fixed batch axis takes batches of that size only; ONNX
    Runtime refuses any other minutes into a run, so every batch the run would feed it is checked
    here."""
    if recipe.model.kind != "onnx":
        return []
    from optimize.models.onnx import graph_inputs

    path = resolve_user_path(recipe.model.reference, base_dir)
    fixed = [spec for spec in graph_inputs(path) if not spec.dynamic_batch]
    if not fixed:
        return []
    size = fixed[0].shape[0]
    needs = _other_batches(recipe, size)
    if not needs:
        return []
    message = (
        f"{path.name} has a fixed batch of {size} (input '{fixed[0].name}'), but "
        f"{' and '.join(what for what, _ in needs)}; re-export it with a dynamic batch axis"
    )
    remedies = [remedy for _, remedy in needs if remedy]
    if len(remedies) == len(needs):
        message += f", or {' and '.join(remedies)}"
    return [(("model", "source"), message)]


def _other_batches(recipe: Recipe, size: int) -> list[tuple[str, str | None]]:
    """What would feed a model batches other than `size`, each with the recipe change that makes
    it feed `size` (None where nothing in the recipe can)."""
    needs: list[tuple[str, str | None]] = []
    if size != 1:
        needs.append(("the run feeds it single samples (checks, calibration)", None))
    if recipe.data.eval is None:  # nothing is evaluated or timed
        return needs
    if recipe.evaluation.batch_size != size:
        needs.append(
            (f"evaluation.batch_size is {recipe.evaluation.batch_size}", f"set evaluation.batch_size: {size}")
        )
    known = device_classes_for(recipe.device_classes)
    for name in (name for name in recipe.targets if name in known):
        other = sorted({known[name].batch.min, known[name].batch.opt} - {size})
        if other:
            needs.append(
                (
                    f"target '{name}' times batches of {' and '.join(map(str, other))}",
                    f"redefine '{name}' under device_classes with batch: {{min: {size}, opt: {size}, max: {size}}}",
                )
            )
    return needs
