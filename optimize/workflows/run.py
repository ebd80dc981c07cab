"""`run`: a recipe through the pipeline, then everything a finished run leaves behind — the run
folder, gate decisions, the build history, MLflow, JUnit/summary/report files and the exit code.
Prints nothing: the outcome says what happened, and the CLI shows it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from optimize.console import Progress
from optimize.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_STAGE_FAILED, Interrupted
from optimize.recipe.loader import LoadedRecipe
from optimize.results import RunOutcome


@dataclass(frozen=True)
class GateOutputs:
    junit: Path | None = None  # extra copies where CI wants them
    summary: Path | None = None


def exit_code_for(target_statuses: list[str], require_targets: bool, gates_passed: bool) -> int:
    """3 when a target failed (or was not built and --require-targets asks for all), else 1 when
    a gate failed, else 0."""
    if "failed" in target_statuses:
        return EXIT_STAGE_FAILED
    if require_targets and any(status != "ok" for status in target_statuses):
        return EXIT_STAGE_FAILED
    return EXIT_OK if gates_passed else EXIT_GATE_FAILED


def run_recipe(
    loaded: LoadedRecipe,
    artifacts_dir: Path,
    only_targets: list[str] | None = None,
    no_cache: bool = False,
    tracking_uri: str | None = None,
    require_targets: bool = False,
    progress: Progress | None = None,
    gate_outputs: GateOutputs = GateOutputs(),
    pushgateway: str | None = None,
) -> RunOutcome:
    from optimize.pipeline import Pipeline, RunOptions

    progress = progress or Progress(enabled=False)
    options = RunOptions(
        artifacts_dir=artifacts_dir, no_cache=no_cache, only_targets=only_targets, progress=progress
    )
    pipeline = Pipeline(loaded, options)
    try:
        with progress.live():
            result = pipeline.run()
        outcome = _finish(loaded, result, artifacts_dir, tracking_uri, require_targets, gate_outputs)
    except KeyboardInterrupt as exc:
        raise Interrupted(pipeline.current) from exc
    if pushgateway:  # after every record is written; a failed push is a warning
        _push(pushgateway, outcome)
    return outcome


def _push(url: str, outcome: RunOutcome) -> None:
    from optimize.tracking.pushgateway import push, target_record

    result = outcome.result
    records = [
        target_record(
            result.recipe.recipe.name,
            result.run_id,
            "run",
            target,
            all(g.passed for g in outcome.gates if g.target in (target.name, "model")),
        )
        for target in result.targets
    ]
    push(url, records, outcome.manifest_path.parent, outcome.warnings.append)


def _finish(loaded, result, artifacts_dir, tracking_uri, require_targets, gate_outputs) -> RunOutcome:
    from optimize.build_history import record_run
    from optimize.gates import decide
    from optimize.manifest import manifest_dict, write_run_folder
    from optimize.tracking.offline import attach_files

    warnings: list[str] = []
    draft = manifest_dict(result, "RUNNING", tracking=None)
    final_metrics = draft["steps"][-1]["metrics"] if draft["steps"] else {}
    gate_results = decide(loaded.recipe.gates, draft["targets"], final_metrics)
    code = exit_code_for(
        [t.status for t in result.targets], require_targets, all(r.passed for r in gate_results)
    )
    status = "FINISHED" if code == EXIT_OK else "FAILED"

    manifest_path = write_run_folder(result, status, tracking=None)
    record_run(artifacts_dir, result)
    tracking = _track(
        loaded,
        result,
        artifacts_dir,
        manifest_path,
        draft["targets"],
        tracking_uri,
        status,
        gate_results,
        warnings.append,
    )
    if tracking:
        manifest_path = write_run_folder(result, status, tracking)
    files = _write_gate_files(result, manifest_path, gate_results, tracking, gate_outputs)
    report = _write_report(manifest_path, warnings.append)
    if report:
        files.append(report)
    if tracking:
        attach_files(artifacts_dir, tracking, files, warnings.append)
    bundles = _write_bundles(result, manifest_path) if loaded.recipe.bundle and code == EXIT_OK else []
    return RunOutcome(
        result=result,
        manifest_path=manifest_path,
        step_records=draft["steps"],
        target_records=draft["targets"],
        gates=gate_results,
        exit_code=code,
        problems=_problems(result, gate_results, code, require_targets),
        warnings=warnings,
        tracking=tracking,
        files=files,
        bundles=bundles,
    )


def _write_bundles(result, manifest_path: Path) -> list[Path]:
    """A deployment bundle per ok target: only a run that passed its gates ships."""
    from optimize.api import BUNDLES
    from optimize.fleet.bundle import write_bundle

    return [
        write_bundle(manifest_path, target.name, result.artifacts_dir / BUNDLES)
        for target in result.targets
        if target.status == "ok"
    ]


def _problems(result, gate_results, code: int, require_targets: bool) -> list[str]:
    """One line per reason the exit code is not 0."""
    if code == EXIT_STAGE_FAILED:
        return [
            f"target '{target.name}' {target.status}: {target.reason}"
            for target in result.targets
            if target.status == "failed" or (require_targets and target.status != "ok")
        ]
    if code == EXIT_GATE_FAILED:
        failed = [r for r in gate_results if r.status == "failed"]
        return [
            f"{len(failed)} gate(s) failed: " + "; ".join(f"{r.target} {r.gate}: {r.detail}" for r in failed)
        ]
    return []


def _write_gate_files(
    result, manifest_path: Path, gate_results, tracking, outputs: GateOutputs
) -> list[Path]:
    from optimize.gates import gates_json, junit_xml, summary_markdown
    from optimize.manifest import read_manifest
    from optimize.store import atomic_write_json, atomic_write_text

    run_dir = result.run_dir
    links = {}
    if tracking:
        shown = tracking.get("remote") or tracking
        links = {"run": shown["parent_url"], **shown["target_urls"]}
    atomic_write_json(run_dir / "gates.json", gates_json(gate_results))
    texts = {
        run_dir / "junit.xml": junit_xml(gate_results, f"optimize.{result.recipe.recipe.name}"),
        run_dir / "summary.md": summary_markdown(read_manifest(manifest_path), gate_results, links),
    }
    for path, text in texts.items():
        atomic_write_text(path, text)
    for source, copy in ((run_dir / "junit.xml", outputs.junit), (run_dir / "summary.md", outputs.summary)):
        if copy is not None:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    return [run_dir / "gates.json", *texts]


def _write_report(manifest_path: Path, warn) -> Path | None:
    from optimize.html_report import write_report

    try:
        return write_report(manifest_path)
    except Exception as exc:  # a plotting problem must not fail a finished build
        warn(f"could not write the HTML report: {type(exc).__name__}: {exc}")
        return None


def _track(
    loaded, result, artifacts_dir, manifest_path, target_records, tracking_uri, status, gate_results, warn
) -> dict | None:
    if not loaded.recipe.tracking.enabled:
        return None
    from optimize.tracking.offline import track
    from optimize.tracking.run_log import log_run

    return track(
        artifacts_dir,
        tracking_uri,
        loaded.recipe.tracking.experiment or loaded.recipe.name,
        lambda tracker, tags: log_run(
            tracker, result, manifest_path, target_records, status, gate_results, tags
        ),
        warn,
    )
