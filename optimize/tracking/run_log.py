"""What of a run goes into MLflow: the recipe and per-step numbers on the parent run, one child
run per target with its numbers, tags and built engine."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from optimize.build_history import target_record
from optimize.results import RunResult
from optimize.tracking.client import Tracker, flatten, metric_key
from optimize.tracking.registry import BUILD_TAG, FOLDER, NAME_TAG, registration_tags, registry_files
from optimize.versions import all_library_versions, host_identity

log = logging.getLogger(__name__)


def _library_tags() -> dict[str, str]:
    return {f"lib.{name}": version for name, version in all_library_versions().items()}


def asks_name(asks: dict[str, str]) -> dict[str, str]:
    """The registered model's name on each build run, so the server's builds of it are found."""
    return {NAME_TAG: asks[NAME_TAG]} if NAME_TAG in asks else {}


def _log_registry_folder(
    tracker: Tracker, run_id: str, manifest_path: Path, artifacts_dir: Path, max_eval_mb
):
    import tempfile

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = registry_files(manifest, artifacts_dir, max_eval_mb, Path(scratch))
        tracker.log_artifact(run_id, folder, FOLDER)


def recipe_params(recipe) -> dict[str, Any]:
    """The recipe as written: steps as {stage: params}, so params read 'stages.0.train.epochs'."""
    params = recipe.model_dump(mode="json", exclude={"device_classes"})
    params["stages"] = [{step.pop("stage"): step} for step in params["stages"]]
    return params


def log_run(
    tracker: Tracker,
    result: RunResult,
    manifest_path: Path,
    target_records: list[dict[str, Any]],
    status: str,
    gate_results=(),
    extra_tags=None,
) -> dict[str, Any]:
    """Log a finished run (target_records: the manifest's, for the headline); returns run ids."""
    recipe = result.recipe.recipe
    host = host_identity()
    parent = tracker.start_run(
        f"{recipe.name}-{result.run_id}",
        {
            "optimize.run_id": result.run_id,
            "optimize.recipe": recipe.name,
            "host": host["hostname"],
            **_library_tags(),
            **(extra_tags or {}),
        },
    )
    tracker.log_params(parent, flatten(recipe_params(recipe)))
    for step in result.steps:
        prefix = f"{step.index:02d}_{step.step_id}"
        tracker.log_metrics(parent, {metric_key("stage", prefix, k): v for k, v in step.metrics.items()})
        tracker.log_metrics(parent, {metric_key("stage", prefix, "seconds"): step.seconds})
        for series, values in step.history.items():
            tracker.log_series(parent, metric_key("stage", prefix, series), values)
    tracker.log_artifact(parent, result.run_dir / "recipe.yaml", "recipe")
    tracker.log_artifact(parent, manifest_path)
    gates_passed = all(g.passed for g in gate_results)
    asks = registration_tags(recipe.registry, recipe.name, gates_passed)
    if asks and result.reference is not None:  # a registered version is an ONNX model to rebuild
        _log_registry_folder(
            tracker, parent, manifest_path, result.artifacts_dir, recipe.registry.max_eval_mb
        )
        tracker.set_tags(parent, asks)

    children = {}
    for target in result.targets:
        child = tracker.start_run(
            f"{recipe.name}-{target.name}",
            {
                "device_class": target.name,
                "runtime": target.runtime,
                "runtime_version": target.runtime_version,
                "target_status": target.status,
                "host": host["hostname"],
                "cpu": host["cpu"],
                "optimize.run_id": result.run_id,
                **_library_tags(),
            },
            parent=parent,
        )
        if target.reason:
            tracker.set_tags(child, {"target_reason": target.reason})
        if target.engine_key:
            tracker.set_tags(child, {"engine_key": target.engine_key})
        record = target_record(recipe.name, result.run_id, "run", target, result.final.hash)
        tracker.set_tags(child, {BUILD_TAG: json.dumps(record, sort_keys=True), **asks_name(asks)})
        tracker.log_metrics(child, target.metrics)
        for name, baseline in target.baselines.items():  # "original.*" and "fp32.*", same session
            tracker.log_metrics(child, {metric_key(name, k): v for k, v in baseline.metrics.items()})
        if target.engine is not None:
            tracker.log_artifact(child, target.engine.path, "engine")
        gates = [g for g in gate_results if g.target == target.name]
        tracker.log_metrics(child, {metric_key("gate", g.gate): float(g.passed) for g in gates})
        tracker.finish(child, "FINISHED" if target.status in ("ok", "built", "skipped") else "FAILED")
        children[target.name] = child
    from optimize.comparison import headline

    lines = [headline(record) for record in target_records]
    if lines:  # the run's description in the MLflow UI
        tracker.set_tags(parent, {"mlflow.note.content": "Original → final:\n" + "\n".join(lines)})
    if gate_results:
        tracker.log_metrics(
            parent, {metric_key("gate", g.target, g.gate): float(g.passed) for g in gate_results}
        )
        tracker.set_tags(parent, {"gates": "passed" if all(g.passed for g in gate_results) else "failed"})
    tracker.finish(parent, status)
    return {
        "uri": tracker.uri,
        "experiment_id": tracker.experiment_id,
        "parent_run_id": parent,
        "parent_url": tracker.run_url(parent),
        "target_runs": children,
        "target_urls": {name: tracker.run_url(run_id) for name, run_id in children.items()},
    }
