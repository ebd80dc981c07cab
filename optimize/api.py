"""The Python API: everything the `optimize` command does, as functions that return results and
print nothing (progress bars only when asked). The command line is a thin layer over these.

    import optimize

    recipe = optimize.load_recipe("recipes/resnet18-digits.yaml")
    outcome = optimize.run(recipe, artifacts="artifacts")
    for target in outcome.targets:
        print(target.name, target.status, target.metrics.get("speedup_vs_original"))
    print(outcome.exit_code, outcome.problems)

Errors the user can act on raise `optimize.errors.OptimizeError` (its `exit_code` is the one the
command documents); Ctrl-C raises `optimize.errors.Interrupted`, a KeyboardInterrupt that says
what was running.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.errors import UsageError

if TYPE_CHECKING:
    from optimize.build_history import Tolerances
    from optimize.fleet.monitor import ProbeResult
    from optimize.fleet.verify import Verification
    from optimize.recipe.loader import LoadedRecipe
    from optimize.results import RunOutcome
    from optimize.runtimes.base import Availability
    from optimize.targets.device_class import DeviceClass
    from optimize.tracking.sync import SyncReport
    from optimize.workflows.rebuild import RebuildOutcome

DEFAULT_ARTIFACTS = "artifacts"
BUNDLES = "bundles"  # the folder under the artifacts folder where bundles go by default
PathLike = str | os.PathLike


def load_recipe(recipe: PathLike | Mapping[str, Any], base_dir: PathLike | None = None) -> LoadedRecipe:
    """A validated recipe from a YAML file or a mapping (whose relative paths resolve against
    `base_dir`, default the current folder). Raises RecipeError with one line per problem."""
    from optimize.recipe.loader import load_recipe as load

    if isinstance(recipe, Mapping):
        return load(recipe, base_dir)
    return load(Path(recipe))


def validate(
    recipe: LoadedRecipe | PathLike | Mapping[str, Any], *, artifacts: PathLike = DEFAULT_ARTIFACTS
) -> LoadedRecipe:
    """Every check `run` makes before it works, and no step: the recipe (schema and cross-checks),
    then its data against its model. The start model is built into the store under `artifacts`,
    where `run` finds it and the checks' pass again. Raises RecipeError with one line per problem."""
    from optimize.pipeline import Pipeline, RunOptions

    loaded = _loaded(recipe)
    Pipeline(loaded, RunOptions(artifacts_dir=Path(artifacts).resolve())).preflight()
    return loaded


def run(
    recipe: LoadedRecipe | PathLike | Mapping[str, Any],
    *,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
    targets: list[str] | None = None,
    no_cache: bool = False,
    tracking_uri: str | None = None,
    require_targets: bool = False,
    progress: bool = False,
    junit: PathLike | None = None,
    summary: PathLike | None = None,
    pushgateway: str | None = None,
) -> RunOutcome:
    """Run a recipe: stages (from the cache when nothing changed), then a build and a side-by-side
    evaluation per target; writes the run folder, history and MLflow run, decides the gates.

    targets: only these of the recipe's targets; junit/summary: extra copies of those files;
    pushgateway: a Prometheus Pushgateway URL to push each target's metrics to (a failed push is
    a warning)."""
    from optimize.console import Progress
    from optimize.workflows.run import GateOutputs, run_recipe

    loaded = _loaded(recipe)
    _check_targets(loaded, targets)
    return run_recipe(
        loaded,
        artifacts_dir=Path(artifacts).resolve(),
        only_targets=list(targets) if targets is not None else None,
        no_cache=no_cache,
        tracking_uri=tracking_uri,
        require_targets=require_targets,
        progress=Progress(enabled=progress),
        gate_outputs=GateOutputs(
            junit=Path(junit) if junit else None, summary=Path(summary) if summary else None
        ),
        pushgateway=pushgateway,
    )


def rebuild(
    device_class: str,
    *,
    run: str = "latest",
    recipe: str | None = None,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
    tracking_uri: str | None = None,
    require_targets: bool = False,
    tolerances: Tolerances | None = None,
    progress: bool = False,
    pushgateway: str | None = None,
) -> RebuildOutcome:
    """Rebuild one device class from a run's stored ONNX model (run: a run id or 'latest';
    recipe: its name or file, to pick the latest run of that recipe) and compare with the
    previous build of that recipe on that class; or, with run `models:/NAME@ALIAS` or
    `models:/NAME/VERSION`, from a registered version on the tracking server, compared with the
    server's previous build of that class; pushgateway: as for run."""
    from optimize.build_history import Tolerances
    from optimize.console import Progress
    from optimize.runs import find_run
    from optimize.tracking.model_uri import is_model_uri, parse_model_uri
    from optimize.workflows.rebuild import RebuildSettings, rebuild_registered
    from optimize.workflows.rebuild import rebuild as rebuild_class

    artifacts_dir = Path(artifacts).resolve()
    settings = RebuildSettings(
        require_targets=require_targets,
        tolerances=tolerances or Tolerances(),
        tracking_uri=tracking_uri,
        progress=Progress(enabled=progress),
        pushgateway=pushgateway,
    )
    if is_model_uri(run):
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        return rebuild_registered(artifacts_dir, parse_model_uri(run), device_class, settings)
    return rebuild_class(artifacts_dir, find_run(artifacts_dir, run, recipe), device_class, settings)


def history(
    *,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
    recipe: str | None = None,
    device_class: str | None = None,
    tracking_uri: str | None = None,
) -> list[dict[str, Any]]:
    """Every recorded build (runs and rebuilds), oldest first, optionally of one recipe (name or
    file) and one device class: this artifacts folder's, or with tracking_uri, every machine's
    builds as that tracking server records them."""
    from optimize.build_history import read
    from optimize.runs import recipe_name

    if tracking_uri:
        from optimize.tracking.registry import build_records, client_for

        return build_records(client_for(tracking_uri), recipe_name(recipe), device_class)
    return read(Path(artifacts).resolve(), recipe_name(recipe), device_class)


def promote(
    model: str,
    *,
    alias: str = "production",
    force: bool = False,
    tracking_uri: str | None = None,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
):
    """Point a registered model's alias (default `production`) at the version `model` names
    (models:/NAME/VERSION or models:/NAME@ALIAS); a version that failed its gates needs force.
    Returns the MLflow model version."""
    from optimize.tracking.model_uri import parse_model_uri
    from optimize.tracking.registry import promote as move_alias
    from optimize.tracking.registry import registry_client

    ref = parse_model_uri(model, "MODEL")
    client, uri = registry_client(tracking_uri, Path(artifacts).resolve(), ref)
    return move_alias(client, ref, uri, alias, force)


def report(
    run: str = "latest",
    *,
    recipe: str | None = None,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
    output: PathLike | None = None,
) -> Path:
    """Write the HTML report of a run (default: into its run folder); returns its path."""
    from optimize.html_report import write_report
    from optimize.runs import find_run

    manifest = find_run(Path(artifacts).resolve(), run, recipe)
    return write_report(manifest, Path(output) if output else None)


def bundle(
    run: str = "latest",
    *,
    device_class: str,
    recipe: str | None = None,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
    out: PathLike | None = None,
) -> Path:
    """Write the deployment bundle of one ok target of a run (default folder: <artifacts>/bundles):
    a Triton model repository, bundle.json, a canary set and Kubernetes manifests, as a folder
    and a .tar.gz beside it. Returns the folder."""
    from optimize.fleet.bundle import write_bundle
    from optimize.runs import find_run

    artifacts_dir = Path(artifacts).resolve()
    manifest = find_run(artifacts_dir, run, recipe)
    return write_bundle(manifest, device_class, Path(out) if out else artifacts_dir / BUNDLES)


def schedule(
    model: str,
    *,
    device_classes: list[str],
    out: PathLike,
    recipe: LoadedRecipe | PathLike | None = None,
    cron: str | None = None,
    time_zone: str | None = None,
    image: str | None = None,
    tracking_secret: str | None = None,
    namespace: str | None = None,
) -> list[Path]:
    """Write a Kubernetes CronJob per device class that rebuilds the registered `model`
    (models:/NAME@ALIAS or models:/NAME/VERSION) on a node of that class, and a kustomization.yaml
    listing them, into `out`. Classes: built-in, or the `recipe`'s own. cron (default nightly at
    03:00), time_zone (default Etc/UTC), image (default the build image of
    deploy/docker/build.Dockerfile), tracking_secret NAME[:KEY] (the Secret holding the tracking
    URI, default mlflow-tracking:uri). Returns the files written."""
    from optimize.fleet import schedule as jobs
    from optimize.targets import device_classes_for
    from optimize.tracking.model_uri import parse_model_uri

    model_ref = parse_model_uri(model)
    classes = device_classes_for(_loaded(recipe).recipe.device_classes if recipe is not None else [])
    chosen = jobs.resolve_classes(list(device_classes), classes)
    given = {
        "schedule": cron,
        "time_zone": time_zone,
        "image": image,
        "tracking_secret": tracking_secret,
        "namespace": namespace,
    }
    settings = jobs.job_settings(**{key: value for key, value in given.items() if value is not None})
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder}: a file, not a folder; give a folder for the CronJob manifests")
    return jobs.write_schedule(folder, model_ref, chosen, settings)


@dataclass(frozen=True)
class DeviceClassStatus:
    device_class: DeviceClass
    availability: Availability  # can this host build / run its engines, and why not


def device_classes(recipe: LoadedRecipe | PathLike | None = None) -> dict[str, DeviceClassStatus]:
    """The built-in device classes (plus a recipe's own), each with what this host can do."""
    from optimize.registries import RUNTIMES
    from optimize.targets import device_classes_for

    classes = device_classes_for(_loaded(recipe).recipe.device_classes if recipe is not None else [])
    return {
        name: DeviceClassStatus(dc, RUNTIMES.get(dc.runtime)().availability(dc))
        for name, dc in classes.items()
    }


def sync(
    *,
    artifacts: PathLike = DEFAULT_ARTIFACTS,
    tracking_uri: str | None = None,
    include_all: bool = False,
    on_run: Callable[[str, str, SyncReport], None] | None = None,
) -> SyncReport:
    """Upload the runs buffered in the local MLflow store to their server, exactly once.
    tracking_uri: the server for every run (default: each run's own, else MLFLOW_TRACKING_URI);
    on_run(local run id, server, report) after each run."""
    from optimize.tracking.sync import sync_pending

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if include_all and not uri:
        raise UsageError("include_all needs a server: pass tracking_uri or set MLFLOW_TRACKING_URI")
    return sync_pending(Path(artifacts).resolve(), uri, include_all, on_run)


def verify(bundle: PathLike) -> Verification:
    """Check a deployment bundle (its folder or .tar.gz) on the host that will serve it, before it
    serves it: bundle.json, every file's SHA-256, the runtime's exact version (and GPU), the engine
    opening, and its outputs on the canary inputs against the build host's. Raises
    VerificationError (exit 3) naming the first check that failed. Needs no torch."""
    from optimize.fleet.verify import verify_bundle

    return verify_bundle(Path(bundle))


def monitor(
    bundle: PathLike,
    *,
    port: int = 9400,
    address: str = "0.0.0.0",
    interval: float = 60.0,
    server: str | None = None,
    on_start: Callable[[str], None] | None = None,
    on_probe: Callable[[ProbeResult], None] | None = None,
    probes: int | None = None,
) -> None:
    """Probe a deployed bundle (its unpacked folder) for as long as it runs: check it once, serve
    Prometheus metrics on http://address:port/metrics, and every `interval` seconds run its canary
    set through the engine (locally, or at a Triton/KServe v2 HTTP `server` URL) and export the
    agreement with the reference outputs, the latency and failed probes (which never end it).
    A bundle that does not verify, a port in use or an interval ≤ 0 raise UsageError (exit 2).
    on_start(metrics URL) once serving; on_probe(result) after each probe; `probes`: stop after
    that many (default: never)."""
    from optimize.fleet import monitor as prober

    if not interval > 0:
        raise UsageError(f"--interval must be a number of seconds above 0, not {interval:g}")
    node = prober.NodeCollector()
    state = prober.open_state(
        Path(bundle), server=server, timeout=max(interval, prober.MIN_TIMEOUT_S), node=node
    )
    try:
        prober.bind(state, port, address)
        prober.say_missing(node)
        if on_start is not None:
            on_start(f"http://{address}:{port}/metrics")
        prober.serve(state, interval, on_probe, probes)
    finally:
        state.close()


def _loaded(recipe: LoadedRecipe | PathLike | Mapping[str, Any]) -> LoadedRecipe:
    from optimize.recipe.loader import LoadedRecipe

    return recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe)


def _check_targets(loaded: LoadedRecipe, targets: list[str] | None) -> None:
    from optimize.registry import did_you_mean
    from optimize.targets import device_classes_for

    wanted = loaded.recipe.targets
    unknown = [name for name in targets or [] if name not in wanted]
    if unknown:
        name = unknown[0]
        classes = device_classes_for(loaded.recipe.device_classes)
        known = name in classes
        suggestion = "" if known else did_you_mean(name, wanted) or did_you_mean(name, classes)
        raise UsageError(
            f"--target {name}: not a target of {loaded.path or loaded.recipe.name}{suggestion}; "
            f"its targets: {', '.join(wanted) or 'none'}"
            + (f"; to build {name}, add it to the recipe's targets" if known else "")
        )
