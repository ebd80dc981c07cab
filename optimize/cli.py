"""The `optimize` command. Exit codes: 0 ok, 1 gate failed or regression, 2 invalid recipe or
usage, 3 stage / build / evaluation failure, 130 interrupted."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

import click
from rich.markup import escape

from optimize.console import Progress, console, out
from optimize.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STAGE_FAILED,
    OptimizeError,
    UsageError,
)

DEFAULT_ARTIFACTS = "artifacts"


class _State:
    debug = False
    current = "start-up"


def _configure(debug: bool) -> None:
    _State.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s: %(message)s" if debug else "warning: %(message)s",
        stream=sys.stderr,
    )
    for noisy in (
        "mlflow",
        "alembic",
        "nncf",
        "urllib3",
        "urllib3.connectionpool",
        "matplotlib",
        "PIL",
        "httpx",
    ):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.ERROR)
    if not debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def handle_errors(command):
    """One line per problem and a documented exit code; the traceback only with --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            code = command(*args, **kwargs)
        except OptimizeError as exc:
            if _State.debug:
                traceback.print_exc()
            for line in str(exc).split("\n"):
                console.print(f"[red]error:[/] {escape(line)}")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/] during {_State.current}; nothing half-written was kept")
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug or an unexpected library failure
            if _State.debug:
                traceback.print_exc()
            console.print(
                f"[red]error:[/] {escape(f'{type(exc).__name__}: {exc}')} (run with --debug for the traceback)"
            )
            sys.exit(EXIT_STAGE_FAILED)
        sys.exit(code or EXIT_OK)

    return wrapper


debug_option = click.option("--debug", is_flag=True, help="show tracebacks and library logs")


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
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path),
    default=DEFAULT_ARTIFACTS,
    show_default=True,
    envvar="OPTIMIZE_ARTIFACTS",
    help="folder for the store, run folders and the default MLflow database",
)
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
@click.option("--quiet", is_flag=True, help="no progress bars")
@debug_option
@handle_errors
def run(
    recipe: Path, targets, no_cache, artifacts, tracking_uri, require_targets, junit, summary, quiet, debug
) -> int:
    """Run RECIPE: stages, then a build and an evaluation per target."""
    _configure(debug)
    from optimize.recipe.loader import load_recipe
    from optimize.run import GateOutputs, execute

    loaded = load_recipe(recipe)
    unknown = [name for name in targets if name not in loaded.recipe.targets]
    if unknown:
        from optimize.registry import did_you_mean

        raise UsageError(
            f"--target {unknown[0]}: not a target of {recipe}{did_you_mean(unknown[0], loaded.recipe.targets)}; "
            f"its targets: {', '.join(loaded.recipe.targets) or 'none'}"
        )
    return execute(
        loaded,
        artifacts_dir=artifacts.resolve(),
        only_targets=list(targets) or None,
        no_cache=no_cache,
        tracking_uri=tracking_uri,
        require_targets=require_targets,
        progress=Progress(enabled=not quiet),
        state=_State,
        gate_outputs=GateOutputs(junit=junit, summary=summary),
    )


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@debug_option
@handle_errors
def validate(recipe: Path, debug) -> int:
    """Check RECIPE without running anything."""
    _configure(debug)
    from optimize.recipe.loader import load_recipe

    loaded = load_recipe(recipe)
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
    _configure(debug)
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
    _configure(debug)
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
    _configure(debug)
    from optimize.registries import RUNTIMES
    from optimize.tables import device_classes_table
    from optimize.targets import device_classes_for

    recipe_classes = []
    if recipe is not None:
        from optimize.recipe.loader import load_recipe

        recipe_classes = load_recipe(recipe).recipe.device_classes
    classes = device_classes_for(recipe_classes)
    availability = {name: RUNTIMES.get(dc.runtime)().availability(dc) for name, dc in classes.items()}
    out.print(device_classes_table(classes, availability))
    return EXIT_OK


artifacts_option = click.option(
    "--artifacts",
    type=click.Path(path_type=Path),
    default=DEFAULT_ARTIFACTS,
    show_default=True,
    envvar="OPTIMIZE_ARTIFACTS",
    help="the artifacts folder the runs were written to",
)


@main.command()
@click.argument("run_id", default="latest", metavar="[RUN]")
@click.option("--recipe", metavar="NAME|PATH", help="the recipe whose latest run is meant")
@artifacts_option
@click.option(
    "--output", type=click.Path(path_type=Path), help="where to write the HTML (default: the run folder)"
)
@debug_option
@handle_errors
def report(run_id, recipe, artifacts, output, debug) -> int:
    """Write the HTML report of RUN (a run id, or 'latest')."""
    _configure(debug)
    from optimize.report import write_report
    from optimize.runs import find_run

    manifest_path = find_run(artifacts.resolve(), run_id, recipe)
    path = write_report(manifest_path, output)
    out.print(f"report: {path}")
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
    metavar="RUN|latest",
    help="the run whose ONNX model to rebuild",
)
@click.option("--recipe", metavar="NAME|PATH", help="the recipe whose latest run is meant")
@artifacts_option
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
    quiet,
    debug,
) -> int:
    """Rebuild one device class from a run's stored ONNX model and flag regressions (exit 1)."""
    _configure(debug)
    from optimize.history import Tolerances
    from optimize.rebuild import rebuild as run_rebuild
    from optimize.runs import find_run

    artifacts = artifacts.resolve()
    manifest_path = find_run(artifacts, from_run, recipe)
    tolerances = Tolerances(
        accuracy=accuracy_tolerance, agreement=accuracy_tolerance, latency=latency_tolerance
    )
    return run_rebuild(
        artifacts,
        manifest_path,
        device_class,
        require_targets,
        tolerances,
        tracking_uri,
        Progress(enabled=not quiet),
    )


@main.command()
@click.option("--device-class", "device_class", metavar="NAME", help="only this device class")
@click.option("--recipe", metavar="NAME|PATH", help="only this recipe")
@artifacts_option
@debug_option
@handle_errors
def history(device_class, recipe, artifacts, debug) -> int:
    """List builds per device class with their headline numbers."""
    _configure(debug)
    from optimize.history import read
    from optimize.runs import recipe_name
    from optimize.tables import history_table

    records = read(artifacts.resolve(), recipe_name(recipe), device_class)
    if not records:
        out.print(f"no builds recorded in {artifacts.resolve() / 'history'}")
        return EXIT_OK
    out.print(history_table(records))
    return EXIT_OK


@main.command()
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="the server to upload to (default: each run's own target, else MLFLOW_TRACKING_URI)",
)
@artifacts_option
@click.option(
    "--all", "include_all", is_flag=True, help="also upload runs that were logged with no server configured"
)
@debug_option
@handle_errors
def sync(tracking_uri, artifacts, include_all, debug) -> int:
    """Upload runs buffered in the local MLflow store to the tracking server, exactly once."""
    _configure(debug)
    import os

    from optimize.tracking.client import local_store_uri
    from optimize.tracking.offline import store_lock
    from optimize.tracking.sync import SyncReport, pending_runs, sync_run

    artifacts = artifacts.resolve()
    if not (artifacts / "mlflow.db").is_file():
        out.print(f"nothing to sync: no local MLflow store at {artifacts / 'mlflow.db'}")
        return EXIT_OK
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if include_all and not uri:
        raise UsageError("--all needs a server: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    local = local_store_uri(artifacts)
    pending = pending_runs(local, uri, include_all)
    if not pending:
        out.print("nothing to sync: every buffered run is on its server")
        return EXIT_OK
    report = SyncReport()
    for index, (run_id, target) in enumerate(pending):
        try:
            with store_lock(artifacts):
                sync_run(local, target, run_id, report)
        except Exception as exc:
            from optimize.errors import OptimizeError

            left = len(pending) - index
            reason = str(exc).splitlines()[0][:200]
            raise OptimizeError(f"cannot sync to {target}: {reason}; {left} run(s) stay buffered") from exc
        out.print(
            f"{run_id} → {target}: {'uploaded' if run_id in report.uploaded else 'already there'} "
            f"(remote run {report.remote_ids[run_id]})"
        )
    out.print(f"synced {len(report.uploaded)} run(s), {len(report.already)} were already on the server")
    return EXIT_OK
