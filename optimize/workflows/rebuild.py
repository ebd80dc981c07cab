"""`rebuild`: rebuild and re-evaluate one device class from a run's stored ONNX model, without the
torch stages, and compare with the previous build of that recipe on that class. Prints nothing."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from optimize.artifacts import Artifact
from optimize.build_history import Change, Tolerances, append, compare, previous_build, target_record
from optimize.console import Progress
from optimize.errors import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    EXIT_STAGE_FAILED,
    Interrupted,
    OptimizeError,
    UsageError,
    first_line,
)
from optimize.manifest import read_manifest
from optimize.pipeline import new_run_id
from optimize.recipe.loader import LoadedRecipe
from optimize.results import TargetResult
from optimize.tracking.model_uri import ModelRef


class MissingArtifact(OptimizeError):
    pass


@dataclass
class RebuildOutcome:
    """What `optimize.rebuild` returns: the new build, the previous one it was compared with
    (None for the first build of the class) and every compared metric."""

    rebuild_id: str
    source_run: str
    recipe: str
    target: TargetResult
    record: dict[str, Any]  # the history line written for this build
    previous: dict[str, Any] | None
    changes: list[Change]
    exit_code: int  # 0, 1 on a regression, 3 when the build failed (or --require-targets)
    warnings: list[str]

    @property
    def regressions(self) -> list[Change]:
        return [change for change in self.changes if change.regression]


def rebuild_exit_code(status: str, changes: list[Change], had_previous: bool, require_targets: bool) -> int:
    if any(change.regression for change in changes):
        return EXIT_GATE_FAILED
    if status == "failed" and not had_previous:
        return EXIT_STAGE_FAILED
    if status != "ok" and require_targets:
        return EXIT_STAGE_FAILED
    return EXIT_OK


def recipe_of(manifest: dict, elsewhere: bool = False) -> LoadedRecipe:
    """The recipe as the run resolved it, with device classes as the recipe file defines them now
    (a changed device class is exactly what a rebuild should pick up). It is re-validated from
    what the recipe set ("given"; paths resolved): a dump with every default filled in would set
    options the schema refuses outside their precision."""
    from optimize.recipe.loader import load_recipe
    from optimize.recipe.schema import Recipe

    record = manifest["recipe"]
    path = Path(record["path"]) if record.get("path") else None
    base_dir = Path(record.get("base_dir") or path.parent)
    resolved = dict(record.get("given") or record["resolved"])
    if path is not None and path.is_file() and not elsewhere:
        with contextlib.suppress(OptimizeError):  # a file that no longer validates: keep the run's classes
            resolved["device_classes"] = [
                dc.model_dump(mode="json") for dc in load_recipe(path).recipe.device_classes
            ]
    # elsewhere: on another machine, whose model and data sources are not the run's to check
    recipe = Recipe.model_validate(resolved, context={"base_dir": base_dir, "sources_elsewhere": elsewhere})
    text = path.read_text(encoding="utf-8") if path is not None and path.is_file() else ""
    return LoadedRecipe(recipe=recipe, path=path, text=text, base_dir=base_dir)


def _stored(pipeline, record: dict | None, what: str) -> Artifact | None:
    if record is None:
        return None
    if not pipeline.store.verify_object(record["hash"]):
        raise MissingArtifact(
            f"the run's {what} model ({record['hash'][:12]}) is no longer in the store at "
            f"{pipeline.store.root}; re-run the recipe to recreate it"
        )
    return Artifact.open(pipeline.store.object_path(record["hash"]), record["hash"])


@dataclass(frozen=True)
class RebuildSettings:
    """How a rebuild runs, wherever its model comes from."""

    require_targets: bool = False  # exit 3 when this host cannot build and run the class
    tolerances: Tolerances = field(default_factory=Tolerances)
    tracking_uri: str | None = None
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    pushgateway: str | None = None


def rebuild(
    artifacts_dir: Path, manifest_path: Path, device_class_name: str, settings: RebuildSettings
) -> RebuildOutcome:
    """Rebuild from a run in this artifacts folder; compared with this folder's history."""
    from optimize.pipeline import Pipeline, RunOptions

    manifest = read_manifest(manifest_path)
    loaded = recipe_of(manifest)
    device_class = _device_class(loaded, device_class_name)
    options = RunOptions(artifacts_dir=artifacts_dir, no_cache=True, progress=settings.progress)
    pipeline = Pipeline(loaded, options)
    models = {role: _stored(pipeline, record, role) for role, record in model_records(manifest).items()}
    previous = previous_build(artifacts_dir, loaded.recipe.name, device_class_name)
    return _rebuild(pipeline, manifest, device_class, models, previous, {}, settings)


def rebuild_registered(
    artifacts_dir: Path, ref: ModelRef, device_class_name: str, settings: RebuildSettings
) -> RebuildOutcome:
    """Rebuild a registered model version on this machine (no shared folder): its models and
    eval samples come from the tracking server, and it is compared with the previous build of
    that class for that version or its predecessor, as the server records it."""
    from optimize.pipeline import Pipeline
    from optimize.run_options import GivenEval, RunOptions
    from optimize.tracking.registry import (
        EVAL,
        MANIFEST,
        NAME_TAG,
        VERSION_TAG,
        build_records,
        download,
        previous_registered_build,
        registry_client,
        resolve_version,
    )

    client, uri = registry_client(settings.tracking_uri, artifacts_dir, ref)
    version = resolve_version(client, ref, uri)
    with tempfile.TemporaryDirectory(dir=artifacts_dir, prefix=".download-") as scratch:
        folder = download(client, version, Path(scratch))
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        loaded = recipe_of(manifest, elsewhere=True)
        device_class = _device_class(loaded, device_class_name)
        pipeline_options = RunOptions(artifacts_dir=artifacts_dir, no_cache=True, progress=settings.progress)
        pipeline = Pipeline(loaded, pipeline_options)
        records = {**model_records(manifest), EVAL: manifest.get("eval_feeds")}
        models = {
            role: _imported(pipeline, folder / role, record, f"{ref} (version {version.version}) {role}")
            for role, record in records.items()
            if record is not None and (folder / role).is_dir()
        }
    feeds = models.pop(EVAL, None)
    if feeds is None:
        _check_eval_data(pipeline, manifest, ref)
    pipeline_options.given_eval = GivenEval(manifest["interface"], feeds, pipeline.data.labeled("eval"))
    previous = previous_registered_build(
        build_records(client, model=ref.name, device_class=device_class_name), int(version.version)
    )
    tags = {NAME_TAG: ref.name, VERSION_TAG: str(version.version)}
    return _rebuild(
        pipeline, manifest, device_class, models, previous, tags, replace(settings, tracking_uri=uri)
    )


def model_records(manifest: dict) -> dict[str, dict | None]:
    """The run's models a rebuild starts from, by role: the final model, the FP32 reference and
    the original model (before compression)."""
    original = manifest.get("original") or {}
    return {
        "final": manifest["steps"][-1]["output"] if manifest["steps"] else manifest["source"],
        "reference": manifest.get("reference"),
        "original": original.get("artifact"),
    }


def _device_class(loaded: LoadedRecipe, name: str):
    from optimize.registry import did_you_mean
    from optimize.targets import device_classes_for

    classes = device_classes_for(loaded.recipe.device_classes)
    if name not in classes:
        raise UsageError(
            f"--device-class {name}: unknown{did_you_mean(name, classes)}; valid: {', '.join(classes)}"
        )
    return classes[name]


def _imported(pipeline, folder: Path, record: dict, what: str) -> Artifact:
    """A downloaded artifact tree, moved into this machine's store; its content must hash to
    what the run recorded."""
    digest = pipeline.store.put_tree(folder)
    if digest != record["hash"]:
        raise MissingArtifact(
            f"{what}: the downloaded files hash to {digest[:12]}, the run recorded {record['hash'][:12]}"
        )
    return Artifact.open(pipeline.store.object_path(digest), digest)


def _check_eval_data(pipeline, manifest: dict, ref: ModelRef) -> None:
    """Without the registered eval samples (over registry.max_eval_mb), this machine must read
    exactly the samples the run read: same data source, same fingerprint."""
    recorded = (manifest.get("data") or {}).get("eval")
    if recorded is None:
        raise UsageError(f"{ref}: the run recorded no eval data; a rebuild evaluates on data.eval")
    source = recorded["source"].get("source")
    try:
        fingerprint = pipeline.data.fingerprint("eval")
    except Exception as exc:
        raise UsageError(
            f"{ref}: its eval samples were not registered (over registry.max_eval_mb) and data.eval "
            f"({source}) cannot be read here: {first_line(exc, 300)}"
        ) from None
    if fingerprint != recorded["fingerprint"]:
        raise UsageError(
            f"{ref}: data.eval ({source}) here is not the data the run evaluated on (fingerprint "
            f"{fingerprint[:12]}, the run's {recorded['fingerprint'][:12]})"
        )


def _rebuild(
    pipeline, manifest, device_class, models, previous, tags, settings: RebuildSettings
) -> RebuildOutcome:
    loaded = pipeline.loaded
    final = models["final"]
    try:
        with settings.progress.live():
            target = pipeline.run_target(
                device_class.name, device_class, final, models.get("reference"), models.get("original")
            )
    except KeyboardInterrupt as exc:
        raise Interrupted(pipeline.current) from exc
    rebuild_id = new_run_id()
    artifacts_dir = pipeline.options.artifacts_dir
    record = target_record(
        loaded.recipe.name, rebuild_id, "rebuild", target, final.hash, source_run=manifest["run_id"]
    )
    changes = compare(previous, record, settings.tolerances) if previous else []
    append(artifacts_dir, record)
    warnings: list[str] = []
    _track(
        loaded, manifest, target, record, changes, tags, settings.tracking_uri, artifacts_dir, warnings.append
    )
    if settings.pushgateway:  # after the history line is written; a failed push is a warning
        _push(settings.pushgateway, record, target, changes, artifacts_dir, warnings.append)
    return RebuildOutcome(
        rebuild_id=rebuild_id,
        source_run=manifest["run_id"],
        recipe=loaded.recipe.name,
        target=target,
        record=record,
        previous=previous,
        changes=changes,
        exit_code=rebuild_exit_code(target.status, changes, previous is not None, settings.require_targets),
        warnings=warnings,
    )


def _push(url, record, target, changes, artifacts_dir, warn) -> None:
    """The rebuilt class's group; its gate is the regression check (0 on a regression)."""
    from optimize.build_history import history_file
    from optimize.tracking.pushgateway import push, target_record

    regressed = any(change.regression for change in changes)
    history = history_file(artifacts_dir, record["recipe"], target.name)
    push(
        url,
        [target_record(record["recipe"], record["run_id"], "rebuild", target, not regressed)],
        history,
        warn,
    )


def _track(loaded, manifest, target, record, changes, tags, tracking_uri, artifacts_dir, warn) -> None:
    """The rebuild as a run of the recipe's experiment, with its history record and engine, so
    any machine reads it back (optimize history --tracking-uri)."""
    if not loaded.recipe.tracking.enabled:
        return
    from optimize.tracking.client import metric_key
    from optimize.tracking.offline import track
    from optimize.tracking.registry import BUILD_TAG

    source = manifest.get("tracking") or {}
    source_run = (source.get("remote") or source).get("parent_run_id", "")

    def log(tracker, extra_tags) -> dict:
        run_id = tracker.start_run(
            f"{loaded.recipe.name}-{target.name}-rebuild",
            {
                "optimize.kind": "rebuild",
                "optimize.rebuild_id": record["run_id"],
                "optimize.source_run_id": manifest["run_id"],
                "optimize.source_mlflow_run": source_run,
                "mlflow.note.content": f"Rebuild of run {manifest['run_id']} (MLflow run {source_run}) for {target.name}",
                "device_class": target.name,
                "runtime": target.runtime,
                "runtime_version": target.runtime_version,
                "target_status": target.status,
                "regression": str(any(c.regression for c in changes)).lower(),
                "engine_key": target.engine_key,
                BUILD_TAG: json.dumps(record, sort_keys=True),
                **tags,
                **extra_tags,
            },
        )
        if target.engine is not None:
            tracker.log_artifact(run_id, target.engine.path, "engine")
        tracker.log_metrics(run_id, target.metrics)
        tracker.log_metrics(
            run_id, {metric_key("regression", c.metric): float(c.regression) for c in changes}
        )
        tracker.finish(run_id, "FINISHED" if target.status == "ok" else "FAILED")
        return {
            "uri": tracker.uri,
            "experiment_id": tracker.experiment_id,
            "parent_run_id": run_id,
            "parent_url": tracker.run_url(run_id),
            "target_runs": {},
            "target_urls": {},
        }

    track(artifacts_dir, tracking_uri, loaded.recipe.tracking.experiment or loaded.recipe.name, log, warn)
