"""`optimize run` end to end: the pipeline, the run folder, MLflow, and the terminal summary."""

from __future__ import annotations

from pathlib import Path

from optimize.console import Progress, console, out
from optimize.errors import EXIT_OK, EXIT_STAGE_FAILED
from optimize.recipe.loader import LoadedRecipe


def exit_code_for(target_statuses: list[str], require_targets: bool) -> int:
    """3 when a target failed, or when one was skipped and --require-targets asks for all."""
    if "failed" in target_statuses:
        return EXIT_STAGE_FAILED
    if require_targets and any(status != "ok" for status in target_statuses):
        return EXIT_STAGE_FAILED
    return EXIT_OK


def execute(
    loaded: LoadedRecipe,
    artifacts_dir: Path,
    only_targets: list[str] | None,
    no_cache: bool,
    tracking_uri: str | None,
    require_targets: bool,
    progress: Progress,
    state,
) -> int:
    from optimize.manifest import write_run_folder
    from optimize.pipeline import Pipeline, RunOptions
    from optimize.tables import steps_table, target_reasons, targets_table

    options = RunOptions(
        artifacts_dir=artifacts_dir, no_cache=no_cache, only_targets=only_targets,
        require_targets=require_targets, progress=progress,
    )
    pipeline = Pipeline(loaded, options)
    try:
        with progress.live():
            result = pipeline.run()
    finally:
        state.current = pipeline.current

    code = exit_code_for([t.status for t in result.targets], require_targets)
    status = "FINISHED" if code == EXIT_OK else "FAILED"
    manifest_path = write_run_folder(result, status, tracking=None)
    tracking = _track(loaded, result, manifest_path, tracking_uri, artifacts_dir, status)
    if tracking:
        manifest_path = write_run_folder(result, status, tracking)

    out.print(steps_table(result))
    if result.targets:
        out.print(targets_table(result))
    for line in target_reasons(result):
        out.print(f"  {line}")
    out.print(f"run folder: {result.run_dir}")
    if tracking:
        out.print(f"MLflow: {tracking['uri']} (run {tracking['parent_run_id']})")
    cached = sum(step.cached for step in result.steps)
    out.print(f"{len(result.steps)} steps ({cached} from cache), {len(result.targets)} targets in {result.seconds:.1f}s")
    if code != EXIT_OK:
        bad = [t for t in result.targets if t.status != "ok"]
        for target in bad:
            console.print(f"[red]error:[/] target '{target.name}' {target.status}: {target.reason}")
    return code


def _track(loaded, result, manifest_path, tracking_uri, artifacts_dir, status) -> dict | None:
    if not loaded.recipe.tracking.enabled:
        return None
    from optimize.tracking.client import Tracker, resolve_tracking_uri
    from optimize.tracking.run_log import log_run

    uri = resolve_tracking_uri(tracking_uri, artifacts_dir)
    try:
        tracker = Tracker(uri, loaded.recipe.tracking.experiment or loaded.recipe.name, artifacts_dir)
        return log_run(tracker, result, manifest_path, status)
    except Exception as exc:  # tracking must never lose a finished build
        console.print(f"[yellow]warning:[/] could not log to MLflow at {uri}: {type(exc).__name__}: {exc}")
        return None
