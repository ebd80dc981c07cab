"""Offline-first tracking: every run is logged to the local SQLite store first (one writer at a
time, under a file lock), then copied to the tracking server when one is configured. A server
that is down or fails midway costs nothing: the run stays buffered for `optimize sync`."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from optimize.errors import first_line
from optimize.tracking.client import Tracker, local_store_uri, resolve_tracking_uri
from optimize.tracking.sync import TARGET, sync_run


@contextlib.contextmanager
def store_lock(artifacts_dir: Path) -> Iterator[None]:
    """Serialises writers of the local SQLite store across processes (SQLite allows one)."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    with open(artifacts_dir / ".mlflow.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def local_store_problem(artifacts_dir: Path) -> str | None:
    """Why the local SQLite store cannot be written, found in microseconds (MLflow itself would
    retry for minutes before giving up)."""
    import os

    path = artifacts_dir / "mlflow.db"
    if path.exists() and not path.is_file():
        return f"{path} exists but is not a file"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if not path.exists() and not os.access(artifacts_dir, os.W_OK):
        return f"cannot create {path}: {artifacts_dir} is not writable"
    return None


def track(
    artifacts_dir: Path,
    cli_uri: str | None,
    experiment: str,
    log: Callable[[Tracker, dict[str, str]], dict[str, Any]],
    warn: Callable[[str], None],
) -> dict[str, Any] | None:
    """Log with `log(tracker, extra_tags)` locally, then replicate. Returns what the manifest
    records: local ids and URLs, plus the server's when the copy succeeded. Problems go to
    `warn`: tracking never fails a finished build."""
    local_uri = local_store_uri(artifacts_dir)
    target = resolve_tracking_uri(cli_uri, artifacts_dir)
    extra_tags = {TARGET: target} if target != local_uri else {}
    problem = local_store_problem(artifacts_dir)
    if problem:
        warn(
            f"could not log to the local MLflow store {local_uri}: {problem}; the run folder has every result"
        )
        return None
    try:
        with store_lock(artifacts_dir):
            tracking = log(Tracker(local_uri, experiment, artifacts_dir), extra_tags)
    except Exception as exc:  # tracking must never lose a finished build: the manifest has it all
        warn(f"could not log to the local MLflow store {local_uri}: {type(exc).__name__}: {exc}")
        return None
    if not extra_tags:
        _register_locally(artifacts_dir, tracking, warn)
        return tracking
    try:
        with store_lock(artifacts_dir):
            report = sync_run(local_uri, target, tracking["parent_run_id"])
        remote = Tracker.for_experiment_name(target, experiment)
        if tracking["parent_run_id"] in report.registered:
            tracking["registered"] = report.registered[tracking["parent_run_id"]]
        tracking["remote"] = {
            "uri": target,
            "parent_run_id": report.remote_ids[tracking["parent_run_id"]],
            "parent_url": remote.run_url(report.remote_ids[tracking["parent_run_id"]]),
            "target_urls": {
                name: remote.run_url(report.remote_ids[run]) for name, run in tracking["target_runs"].items()
            },
        }
    except Exception as exc:
        tracking["buffered_for"] = target
        warn(
            f"tracking server {target} unreachable ({type(exc).__name__}: {first_line(exc, 200)}); results are buffered in "
            f"{local_uri} — run `optimize sync` to upload them"
        )
    return tracking


def _register_locally(artifacts_dir: Path, tracking: dict[str, Any], warn: Callable[[str], None]) -> None:
    """With no server, the local store's registry holds the versions (as the server's would)."""
    from optimize.tracking.registry import client_for, register_run

    try:
        with store_lock(artifacts_dir):
            version = register_run(client_for(tracking["uri"]), tracking["parent_run_id"])
        if version is not None:
            tracking["registered"] = f"models:/{version.name}/{version.version}"
    except Exception as exc:
        warn(f"could not register the model in {tracking['uri']}: {type(exc).__name__}: {exc}")


def attach_files(
    artifacts_dir: Path,
    tracking: dict[str, Any],
    files: list[Path],
    warn: Callable[[str], None],
    folder: str = "report",
) -> None:
    """Add files written after logging (report, gates) to the local run, and to its server copy."""
    targets = [(tracking["uri"], tracking["experiment_id"], tracking["parent_run_id"], True)]
    remote = tracking.get("remote")
    if remote:
        targets.append((remote["uri"], None, remote["parent_run_id"], False))
    for uri, experiment_id, run_id, is_local in targets:
        try:
            with store_lock(artifacts_dir) if is_local else contextlib.nullcontext():
                tracker = Tracker.for_experiment_id(uri, experiment_id or "")
                for path in files:
                    tracker.log_artifact(run_id, path, folder)
        except Exception as exc:
            warn(
                f"could not attach {folder} files to MLflow run {run_id} at {uri}: {type(exc).__name__}: {exc}"
            )
