"""The MLflow Model Registry as the exchange between machines: a tracked run logs what a rebuild
elsewhere needs under its parent run's `registry/` folder and registers it as a version of a
registered model; every build (a run's target, a rebuild) carries its history record as a tag,
so "the previous build of this class" is read from the server, never from a shared folder.

The run itself carries what registration needs (tags below), so `optimize sync` can register a
run that was buffered while the server was away, and registering twice is a no-op.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optimize.errors import UsageError, first_line
from optimize.registry import did_you_mean
from optimize.tracking.model_uri import ModelRef

FOLDER = "registry"  # the parent run's artifact folder a registered version points at
MODELS = ("final", "reference", "original")  # artifact trees in it, by role
EVAL = "eval"  # the eval samples as evaluated (feeds.npz), when under registry.max_eval_mb
MANIFEST = "manifest.json"

NAME_TAG = "optimize.registry.name"
ALIAS_TAG = "optimize.registry.alias"
PROMOTE_TAG = "optimize.registry.promote"  # "true": move `production` here when registered
VERSION_TAG = "optimize.registry.version"  # on a run and its children once registered
BUILD_TAG = "optimize.build"  # a build's history record (JSON) on each target run and rebuild run
PRODUCTION = "production"


# ---- what a run logs and asks for (pure)


def registration_tags(registry, recipe_name: str, gates_passed: bool) -> dict[str, str]:
    """The parent run's tags that ask for registration (none when the recipe turns it off)."""
    if not registry.enabled:
        return {}
    return {
        NAME_TAG: registry.name or recipe_name,
        ALIAS_TAG: registry.alias,
        PROMOTE_TAG: str(registry.promote == "on_pass" and gates_passed).lower(),
    }


def version_tags(manifest: Mapping[str, Any], gates_passed: bool) -> dict[str, str]:
    """What a registered version says about itself."""
    final = manifest["steps"][-1]["output"] if manifest["steps"] else manifest["source"]
    precisions = sorted({t["engine"]["precision"] for t in manifest["targets"] if t.get("engine")})
    return {
        "optimize.run_id": manifest["run_id"],
        "recipe": manifest["recipe"]["name"],
        "recipe_hash": manifest["recipe"]["hash"],
        "source_hash": manifest["source"]["hash"],
        "model_hash": final["hash"],
        "precision": ",".join(precisions) or "unknown",
        "gates": "passed" if gates_passed else "failed",
    }


def registry_files(manifest: Mapping[str, Any], artifacts_dir: Path, max_eval_mb: float, into: Path) -> Path:
    """Stage the `registry/` folder: the model trees a rebuild starts from, the eval samples
    (within the budget) and the manifest, whose `data` section names each data source and its
    fingerprint."""
    folder = into / FOLDER
    folder.mkdir(parents=True)
    original = manifest.get("original") or {}
    records = {
        "final": manifest["steps"][-1]["output"] if manifest["steps"] else manifest["source"],
        "reference": manifest.get("reference"),
        "original": original.get("artifact"),
    }
    feeds = manifest.get("eval_feeds")
    if feeds and feeds["size_bytes"] <= max_eval_mb * 1e6:
        records[EVAL] = feeds
    from optimize.store import ArtifactStore

    store = ArtifactStore(artifacts_dir / "store")
    for role, record in records.items():
        if record is not None:
            shutil.copytree(store.object_path(record["hash"]), folder / role)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return folder


# ---- the previous build (pure)


def previous_registered_build(records: list[dict[str, Any]], version: int) -> dict[str, Any] | None:
    """What a rebuild of `version` is compared with: the last build of that version (its last
    rebuild, else the run's own), else the last build of the closest earlier version."""
    earlier = [r for r in records if r.get("registry_version") and r["registry_version"] <= version]
    if not earlier:
        return None
    closest = max(r["registry_version"] for r in earlier)
    same = sorted((r for r in earlier if r["registry_version"] == closest), key=lambda r: r["time"])
    rebuilds = [r for r in same if r["kind"] == "rebuild"]
    return (rebuilds or same)[-1]


# ---- the server side (thin adapters around MlflowClient)


def client_for(uri: str):
    from optimize.tracking.client import _quiet_mlflow

    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def registry_client(cli_uri: str | None, artifacts_dir: Path, ref: ModelRef):
    """(client, uri) of the registry a reference is looked up in: --tracking-uri, then
    MLFLOW_TRACKING_URI, then the artifacts folder's own store, which must exist."""
    from optimize.tracking.client import local_store_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(cli_uri, artifacts_dir)
    if uri == local_store_uri(artifacts_dir) and not (artifacts_dir / "mlflow.db").is_file():
        raise UsageError(
            f"{ref}: no tracking server given (--tracking-uri URI or MLFLOW_TRACKING_URI) and no "
            f"local MLflow store in {artifacts_dir}; a registry reference is looked up on the server"
        )
    return client_for(uri), uri


def register_run(client, run_id: str):
    """Register a logged run's `registry/` folder as a new version, per the run's tags; returns the
    version, or None when the run asks for none. A run registered before gets no second version."""
    run = client.get_run(run_id)
    name = run.data.tags.get(NAME_TAG)
    if not name or ALIAS_TAG not in run.data.tags:  # a rebuild run names its model, asks nothing
        return None
    found = client.search_model_versions(f"run_id='{run_id}'")
    if found:
        return found[0]
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="Registered by optimize: final ONNX model of a recipe"
        )
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    manifest = json.loads(_read_text(client, run_id, f"{FOLDER}/{MANIFEST}"))
    gates_passed = run.data.tags.get("gates", "passed") == "passed"
    version = client.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{FOLDER}",
        run_id=run_id,
        tags=version_tags(manifest, gates_passed),
        description=run.data.tags.get("mlflow.note.content", ""),
    )
    client.set_registered_model_alias(name, run.data.tags[ALIAS_TAG], version.version)
    if run.data.tags.get(PROMOTE_TAG) == "true":
        client.set_registered_model_alias(name, PRODUCTION, version.version)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    for tagged in (run_id, *(child.info.run_id for child in children)):
        client.set_tag(tagged, VERSION_TAG, str(version.version))
    return version


def _read_text(client, run_id: str, path: str) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return Path(client.download_artifacts(run_id, path, scratch)).read_text(encoding="utf-8")


def resolve_version(client, ref: ModelRef, uri: str):
    """The version a reference names, or a UsageError that lists what the registry has (or says
    the registry cannot be reached)."""
    try:
        return _version(client, ref, uri)
    except UsageError:
        raise
    except Exception as exc:  # connection refused, timeouts, a URI that is no MLflow server
        raise UsageError(f"{ref}: cannot reach the registry at {uri}: {first_line(exc, 300)}") from None


def _version(client, ref: ModelRef, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(ref.name)
    except MlflowException:
        names = [model.name for model in client.search_registered_models()]
        raise UsageError(
            f"{ref}: no registered model {ref.name!r} at {uri}{did_you_mean(ref.name, names)}; "
            f"registered: {', '.join(names) or 'none'}"
        ) from None
    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, str(ref.version))
    except MlflowException:
        model = client.get_registered_model(ref.name)
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{ref.name}'"))
        have = (
            f"aliases: {', '.join(sorted(model.aliases)) or 'none'}"
            if ref.alias
            else f"versions: {', '.join(map(str, versions)) or 'none'}"
        )
        raise UsageError(f"{ref}: not in the registry at {uri}; {ref.name} has {have}") from None


def download(client, version, into: Path) -> Path:
    """The version's `registry/` folder, downloaded under `into`."""
    into.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(version.run_id, FOLDER, str(into)))


def build_records(
    client, recipe: str | None = None, device_class: str | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """Every build recorded on the server (oldest first), optionally of one recipe, device class
    or registered model; each record carries its registered version where it has one."""
    filters = [f"tags.`{BUILD_TAG}` != ''"]
    if device_class:
        filters.append(f"tags.device_class = '{device_class}'")
    if model:
        filters.append(f"tags.`{NAME_TAG}` = '{model}'")
    experiments = [e.experiment_id for e in client.search_experiments()]
    records = []
    for start in range(0, len(experiments), 100):
        runs = client.search_runs(
            experiments[start : start + 100], filter_string=" and ".join(filters), max_results=50000
        )
        for run in runs:
            record = json.loads(run.data.tags[BUILD_TAG])
            version = run.data.tags.get(VERSION_TAG)
            record["registry_version"] = int(version) if version else None
            record["mlflow_run_id"] = run.info.run_id
            if recipe is None or record["recipe"] == recipe:
                records.append(record)
    return sorted(records, key=lambda r: r["time"])


def promote(client, ref: ModelRef, uri: str, alias: str = PRODUCTION, force: bool = False):
    """Point `alias` at the version `ref` names; a version whose run failed its gates only with
    force."""
    version = resolve_version(client, ref, uri)
    if version.tags.get("gates") == "failed" and not force:
        raise UsageError(
            f"{ref} (version {version.version}) failed its gates in run {version.tags.get('optimize.run_id')}; "
            f"pass --force to promote it anyway"
        )
    client.set_registered_model_alias(ref.name, alias, version.version)
    return version
