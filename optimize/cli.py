"""The `optimize` command: parses arguments, calls the Python API (optimize.api) and prints what
it returns. Exit codes: 0 ok, 1 gate failed or regression, 2 invalid recipe or usage, 3 stage /
build / evaluation failure or a bundle that failed verification, 130 interrupted."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from optimize.cli_fleet import COMMANDS
from optimize.cli_options import (
    artifacts_option,
    debug_option,
    handle_errors,
    pushgateway_option,
    seconds_since_start,
)
from optimize.console import console, out
from optimize.errors import (
    EXIT_OK,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optimize")
def main() -> None:
    """Optimize a PyTorch model for edge devices from one recipe file."""


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option(
    "--target", "targets", multiple=True, metavar="NAME", help="build only these targets (repeatable)"
)
@click.option("--no-cache", is_flag=True, help="redo every step, build and evaluation")
@artifacts_option("folder for the store, run folders and the default MLflow database")
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else SQLite in --artifacts)",
)
@click.option(
    "--require-targets", is_flag=True, help="a target this host cannot build or run fails the run (exit 3)"
)
@click.option(
    "--junit", type=click.Path(path_type=Path), help="also write the gate results as JUnit XML here"
)
@click.option(
    "--summary",
    type=click.Path(path_type=Path),
    help="also write the Markdown summary (for a PR comment) here",
)
@pushgateway_option("each target's")
@click.option("--quiet", is_flag=True, help="no progress bars")
@debug_option
@handle_errors
def run(
    recipe: Path,
    targets,
    no_cache,
    artifacts,
    tracking_uri,
    require_targets,
    junit,
    summary,
    pushgateway,
    quiet,
    debug,
) -> int:
    """Run RECIPE: stages, then a build and an evaluation per target."""
    from optimize import api

    outcome = api.run(
        recipe,
        artifacts=artifacts,
        targets=list(targets) or None,
        no_cache=no_cache,
        tracking_uri=tracking_uri,
        require_targets=require_targets,
        progress=not quiet,
        junit=junit,
        summary=summary,
        pushgateway=pushgateway,
    )
    _print_run(outcome)
    return outcome.exit_code


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")


def _print_run(outcome) -> None:
    from optimize.columns import target_notes
    from optimize.comparison import headline
    from optimize.tables import comparisons_table, gates_table, steps_table, targets_table

    result = outcome.result
    _print_warnings(outcome.warnings)
    out.print(
        steps_table(outcome.step_records, f"Stages · {result.recipe.recipe.name} · run {result.run_id}")
    )
    if outcome.target_records:
        out.print(targets_table(outcome.target_records))
        out.print(comparisons_table(outcome.target_records))
    for line in target_notes(outcome.target_records):
        out.print(f"  {escape(line)}")
    if outcome.gates:
        out.print(gates_table(outcome.gates))
    if outcome.target_records:
        out.print("[bold]Original → final, per target (measured side by side in this run):[/]")
        for record in outcome.target_records:
            out.print(f"  {escape(headline(record))}")
    out.print(f"run folder: {result.run_dir} (report.html, summary.md, junit.xml, manifest.json)")
    for folder in outcome.bundles:
        out.print(f"bundle: {folder} (and {folder.name}.tar.gz)")
    if outcome.tracking:
        out.print(f"MLflow: {(outcome.tracking.get('remote') or outcome.tracking)['parent_url']}")
        if outcome.tracking.get("registered"):
            out.print(f"registered: {outcome.tracking['registered']}")
    cached = sum(step.cached for step in result.steps)
    out.print(
        f"{len(result.steps)} steps ({cached} from cache), {len(result.targets)} targets "
        f"in {seconds_since_start():.1f}s"
    )
    for problem in outcome.problems:
        console.print(f"[red]error:[/] {escape(problem)}")


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@artifacts_option("folder for the store, where the start model and the checks' pass are kept for run")
@debug_option
@handle_errors
def validate(recipe: Path, artifacts, debug) -> int:
    """Check RECIPE as run does before any step: the recipe, then its data against its model."""
    from optimize import api

    loaded = api.validate(recipe, artifacts=artifacts)
    steps = " → ".join(loaded.recipe.step_ids()) or "no stages"
    out.print(
        f"[green]ok[/] {loaded.path}: {loaded.recipe.name}: {steps}; targets: {', '.join(loaded.recipe.targets) or 'none'}"
    )
    return EXIT_OK


@main.command()
@debug_option
@handle_errors
def stages(debug) -> int:
    """List the stages with their parameters, types and defaults."""
    from optimize.recipe.field_docs import stages_tables

    for table in stages_tables():
        out.print(table)
    return EXIT_OK


@main.command()
@click.option(
    "--format", "format_", type=click.Choice(["json", "markdown"]), default="json", show_default=True
)
@debug_option
@handle_errors
def schema(format_, debug) -> int:
    """Print the recipe schema: JSON Schema (for editors) or the Markdown reference."""
    from optimize.recipe.reference import json_schema, markdown

    click.echo(json_schema() if format_ == "json" else markdown(), nl=False)
    return EXIT_OK


@main.command()
@click.option(
    "--recipe", type=click.Path(path_type=Path), help="include device classes defined in this recipe"
)
@debug_option
@handle_errors
def targets(recipe, debug) -> int:
    """List device classes, their runtime, and whether this host can build and run them."""
    from optimize.api import device_classes
    from optimize.registries import RUNTIMES
    from optimize.tables import device_classes_table

    statuses = device_classes(recipe)
    out.print(
        device_classes_table(
            {name: s.device_class for name, s in statuses.items()},
            {name: s.availability for name, s in statuses.items()},
        )
    )
    for runtime in sorted({s.device_class.runtime for s in statuses.values()}):
        for line in RUNTIMES.get(runtime)().host_report():
            out.print(line, markup=False, highlight=False)
    return EXIT_OK


@main.command()
@click.argument("run_id", default="latest", metavar="[RUN]")
@click.option("--recipe", metavar="NAME|PATH", help="the recipe whose latest run is meant")
@artifacts_option("the artifacts folder the runs were written to")
@click.option(
    "--output", type=click.Path(path_type=Path), help="where to write the HTML (default: the run folder)"
)
@debug_option
@handle_errors
def report(run_id, recipe, artifacts, output, debug) -> int:
    """Write the HTML report of RUN (a run id, or 'latest')."""
    from optimize.api import report as write_report

    out.print(f"report: {write_report(run_id, recipe=recipe, artifacts=artifacts, output=output)}")
    return EXIT_OK


@main.command()
@click.option(
    "--device-class", "device_class", required=True, metavar="NAME", help="the device class to rebuild"
)
@click.option(
    "--from",
    "from_run",
    default="latest",
    show_default=True,
    metavar="RUN|latest|models:/NAME@ALIAS|models:/NAME/VERSION",
    help="the run whose ONNX model to rebuild, or a registered version on the tracking server",
)
@click.option("--recipe", metavar="NAME|PATH", help="the recipe whose latest run is meant")
@artifacts_option("the artifacts folder the runs were written to")
@click.option("--tracking-uri", metavar="URI", help="MLflow tracking URI")
@click.option("--require-targets", is_flag=True, help="exit 3 when this host cannot build and run the class")
@click.option(
    "--accuracy-tolerance",
    type=float,
    default=0.005,
    show_default=True,
    help="absolute accuracy drop allowed",
)
@click.option(
    "--latency-tolerance",
    type=float,
    default=0.15,
    show_default=True,
    help="relative latency increase allowed",
)
@pushgateway_option("the rebuilt class's")
@click.option("--quiet", is_flag=True, help="no progress bars")
@debug_option
@handle_errors
def rebuild(
    device_class,
    from_run,
    recipe,
    artifacts,
    tracking_uri,
    require_targets,
    accuracy_tolerance,
    latency_tolerance,
    pushgateway,
    quiet,
    debug,
) -> int:
    """Rebuild one device class from a run's stored ONNX model and flag regressions (exit 1)."""
    from optimize import api
    from optimize.build_history import Tolerances

    outcome = api.rebuild(
        device_class,
        run=from_run,
        recipe=recipe,
        artifacts=artifacts,
        tracking_uri=tracking_uri,
        require_targets=require_targets,
        tolerances=Tolerances(
            accuracy=accuracy_tolerance, agreement=accuracy_tolerance, latency=latency_tolerance
        ),
        progress=not quiet,
        pushgateway=pushgateway,
    )
    _print_rebuild(outcome)
    return outcome.exit_code


def _print_rebuild(outcome) -> None:
    from optimize.tables import changes_table

    target = outcome.target
    _print_warnings(outcome.warnings)
    out.print(
        f"rebuild {outcome.rebuild_id} of run {outcome.source_run} ({outcome.recipe}) for {target.name}: "
        f"{target.status}" + (f" — {escape(target.reason)}" if target.reason else "")
    )
    if outcome.previous is None:
        out.print(
            "no previous build of this recipe on this device class: nothing to compare (recorded as the baseline)"
        )
        return
    out.print(changes_table(outcome.changes, outcome.previous, outcome.record))
    if outcome.regressions:
        out.print(
            "[red]regression:[/] "
            + "; ".join(f"{c.metric} {c.previous} → {c.current} {c.note}" for c in outcome.regressions)
        )
    else:
        out.print("[green]no regression[/]")


@main.command()
@click.option("--device-class", "device_class", metavar="NAME", help="only this device class")
@click.option("--recipe", metavar="NAME|PATH", help="only this recipe")
@artifacts_option("the artifacts folder the runs were written to")
@click.option("--tracking-uri", metavar="URI", help="read every machine's builds from this tracking server")
@debug_option
@handle_errors
def history(device_class, recipe, artifacts, tracking_uri, debug) -> int:
    """List builds per device class with their headline numbers."""
    from optimize.api import history as read
    from optimize.tables import history_table

    records = read(artifacts=artifacts, recipe=recipe, device_class=device_class, tracking_uri=tracking_uri)
    if not records:
        out.print(
            f"no builds recorded in {tracking_uri or artifacts.resolve() / 'history'}"
            + "".join(f" {what} {name}" for what, name in (("of", recipe), ("on", device_class)) if name)
            + " (runs written elsewhere: pass --artifacts DIR)"
        )
        return EXIT_OK
    out.print(history_table(records))
    return EXIT_OK


@main.command()
@click.argument("model", metavar="models:/NAME/VERSION|models:/NAME@ALIAS")
@click.option(
    "--alias",
    default="production",
    show_default=True,
    metavar="NAME",
    help="the alias to point at that version",
)
@click.option("--force", is_flag=True, help="also promote a version whose run failed its gates")
@click.option("--tracking-uri", metavar="URI", help="MLflow tracking URI (the registry)")
@artifacts_option("the artifacts folder (its local MLflow store is the registry without a server)")
@debug_option
@handle_errors
def promote(model, alias, force, tracking_uri, artifacts, debug) -> int:
    """Point a registered model's alias (production by default) at a version."""
    from optimize.api import promote as move_alias

    version = move_alias(model, alias=alias, force=force, tracking_uri=tracking_uri, artifacts=artifacts)
    out.print(
        f"models:/{version.name}@{alias} → version {version.version} (run {version.tags.get('optimize.run_id')})"
    )
    return EXIT_OK


@main.command()
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="the server to upload to (default: each run's own target, else MLFLOW_TRACKING_URI)",
)
@artifacts_option("the artifacts folder the runs were written to")
@click.option(
    "--all", "include_all", is_flag=True, help="also upload runs that were logged with no server configured"
)
@debug_option
@handle_errors
def sync(tracking_uri, artifacts, include_all, debug) -> int:
    """Upload runs buffered in the local MLflow store to the tracking server, exactly once."""
    from optimize.api import sync as sync_runs

    def shown(run_id, target, report) -> None:
        state = "uploaded" if run_id in report.uploaded else "already there"
        out.print(f"{run_id} → {target}: {state} (remote run {report.remote_ids[run_id]})")

    report = sync_runs(artifacts=artifacts, tracking_uri=tracking_uri, include_all=include_all, on_run=shown)
    if report.local_store is None:
        out.print(f"nothing to sync: no local MLflow store at {artifacts.resolve() / 'mlflow.db'}")
    elif not report.uploaded and not report.already:
        out.print("nothing to sync: every buffered run is on its server")
    else:
        out.print(f"synced {len(report.uploaded)} run(s), {len(report.already)} were already on the server")
    return EXIT_OK


for _command in COMMANDS:
    main.add_command(_command)
