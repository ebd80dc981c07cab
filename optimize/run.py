"""`optimize run` end to end: the pipeline, the run folder, gates, MLflow, and the terminal summary."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from optimize.console import Progress, console, out
from optimize.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_STAGE_FAILED
from optimize.recipe.loader import LoadedRecipe


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


def execute(
    loaded: LoadedRecipe,
    artifacts_dir: Path,
    only_targets: list[str] | None,
    no_cache: bool,
    tracking_uri: str | None,
    require_targets: bool,
    progress: Progress,
    state,
    gate_outputs: GateOutputs = GateOutputs(),
) -> int:
    from optimize.gates import decide
    from optimize.history import record_run
    from optimize.manifest import manifest_dict, write_run_folder
    from optimize.pipeline import Pipeline, RunOptions
    from optimize.tracking.offline import attach_files

    options = RunOptions(
        artifacts_dir=artifacts_dir,
        no_cache=no_cache,
        only_targets=only_targets,
        require_targets=require_targets,
        progress=progress,
    )
    pipeline = Pipeline(loaded, options)
    try:
        with progress.live():
            result = pipeline.run()
    finally:
        state.current = pipeline.current

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
        loaded, result, manifest_path, draft["targets"], tracking_uri, artifacts_dir, status, gate_results
    )
    if tracking:
        manifest_path = write_run_folder(result, status, tracking)
    files = _write_gate_files(result, manifest_path, gate_results, tracking, gate_outputs)
    report = _write_report(manifest_path)
    if tracking:
        attach_files(artifacts_dir, tracking, [*files, *([report] if report else [])])

    _print_summary(result, draft["targets"], gate_results, tracking)
    if code == EXIT_STAGE_FAILED:
        for target in result.targets:
            if target.status == "failed" or (require_targets and target.status != "ok"):
                console.print(
                    f"[red]error:[/] target '{target.name}' {target.status}: {escape(target.reason)}"
                )
    elif code == EXIT_GATE_FAILED:
        failed = [r for r in gate_results if r.status == "failed"]
        console.print(
            f"[red]error:[/] {len(failed)} gate(s) failed: "
            + escape("; ".join(f"{r.target} {r.gate}: {r.detail}" for r in failed))
        )
    return code


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
    files = {
        run_dir / "gates.json": None,
        run_dir / "junit.xml": junit_xml(gate_results, f"optimize.{result.recipe.recipe.name}"),
        run_dir / "summary.md": summary_markdown(read_manifest(manifest_path), gate_results, links),
    }
    atomic_write_json(run_dir / "gates.json", gates_json(gate_results))
    for path, text in files.items():
        if text is not None:
            atomic_write_text(path, text)
    for source, copy in ((run_dir / "junit.xml", outputs.junit), (run_dir / "summary.md", outputs.summary)):
        if copy is not None:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    return list(files)


def _write_report(manifest_path: Path) -> Path | None:
    from optimize.report import write_report

    try:
        return write_report(manifest_path)
    except Exception as exc:  # a plotting problem must not fail a finished build
        console.print(f"[yellow]warning:[/] could not write the HTML report: {type(exc).__name__}: {exc}")
        return None


def _print_summary(result, target_records, gate_results, tracking) -> None:
    from optimize.comparison import headline
    from optimize.tables import comparisons_table, gates_table, steps_table, target_reasons, targets_table

    out.print(steps_table(result))
    if result.targets:
        out.print(targets_table(result))
        out.print(comparisons_table(target_records))
    for line in target_reasons(result):
        out.print(f"  {escape(line)}")
    if gate_results:
        out.print(gates_table(gate_results))
    if target_records:
        out.print("[bold]Original → final, per target (measured side by side in this run):[/]")
        for record in target_records:
            out.print(f"  {escape(headline(record))}")
    out.print(f"run folder: {result.run_dir} (report.html, summary.md, junit.xml, manifest.json)")
    if tracking:
        out.print(f"MLflow: {(tracking.get('remote') or tracking)['parent_url']}")
    cached = sum(step.cached for step in result.steps)
    out.print(
        f"{len(result.steps)} steps ({cached} from cache), {len(result.targets)} targets in {result.seconds:.1f}s"
    )


def _track(
    loaded, result, manifest_path, target_records, tracking_uri, artifacts_dir, status, gate_results
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
    )
