"""Replicating runs from the local SQLite store to a tracking server, exactly once; a run that
asks for registration (optimize.tracking.registry) is registered there once it is complete.

Each replicated run carries the tag optimize.buffered_run_id (the local run id) and, once every
param, metric step, tag and artifact is across, optimize.sync_complete=true. A sync that finds a
complete copy skips the run; one that finds an incomplete copy (an earlier sync that died midway)
deletes it and copies again. So `optimize sync` can be repeated or interrupted without ever
leaving duplicates or half runs on the server.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BUFFERED_ID = "optimize.buffered_run_id"
COMPLETE = "optimize.sync_complete"
TARGET = "optimize.tracking_target"  # the server a buffered run is meant for


def synced_tag(uri: str) -> str:
    """Local tag marking that a run has reached the server at `uri` (value: the remote run id)."""
    return f"optimize.synced.{hashlib.sha256(uri.encode()).hexdigest()[:10]}"


@dataclass
class SyncReport:
    uploaded: list[str] = field(default_factory=list)  # local parent run ids copied now
    already: list[str] = field(default_factory=list)  # local parent run ids found complete
    remote_ids: dict[str, str] = field(default_factory=dict)  # local run id → remote run id
    local_store: Path | None = None  # None when there is no local store to sync from
    registered: dict[str, str] = field(default_factory=dict)  # local parent run id → models:/NAME/VERSION


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _copy_run(local, remote, run, experiment_id: str, parent_remote_id: str | None) -> str:
    """Copy one run (params, full metric histories, tags, artifacts, status); returns its remote id."""
    from mlflow.entities import Metric, Param, RunTag

    # (a version number from a local registration is overwritten when the server registers the run)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("optimize.synced.")}
    tags[BUFFERED_ID] = run.info.run_id
    if parent_remote_id is not None:
        tags["mlflow.parentRunId"] = parent_remote_id
    created = remote.create_run(
        experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name
    )
    remote_id = created.info.run_id
    for batch in _chunks([Param(k, v) for k, v in run.data.params.items()], 100):
        remote.log_batch(remote_id, params=batch)
    metrics = []
    for key in run.data.metrics:
        metrics.extend(
            Metric(m.key, m.value, m.timestamp, m.step)
            for m in local.get_metric_history(run.info.run_id, key)
        )
    for batch in _chunks(metrics, 500):
        remote.log_batch(remote_id, metrics=batch)
    with tempfile.TemporaryDirectory() as scratch:
        if local.list_artifacts(run.info.run_id):
            downloaded = local.download_artifacts(run.info.run_id, "", scratch)
            remote.log_artifacts(remote_id, downloaded)
    remote.set_terminated(remote_id, status=run.info.status, end_time=run.info.end_time)
    remote.log_batch(remote_id, tags=[RunTag(COMPLETE, "true")])
    return remote_id


def _remote_copy(remote, experiment_id: str, local_run_id: str) -> str | None:
    """The complete remote copy of a local run; incomplete copies are deleted."""
    found = remote.search_runs([experiment_id], filter_string=f"tags.`{BUFFERED_ID}` = '{local_run_id}'")
    complete = None
    for run in found:
        if run.data.tags.get(COMPLETE) == "true" and complete is None:
            complete = run.info.run_id
        else:
            remote.delete_run(run.info.run_id)
    return complete


def sync_run(
    local_uri: str, remote_uri: str, parent_run_id: str, report: SyncReport | None = None
) -> SyncReport:
    """Copy a local parent run and its child runs to the server (idempotent)."""
    from mlflow.tracking import MlflowClient

    from optimize.tracking.client import _quiet_mlflow
    from optimize.tracking.registry import register_run

    _quiet_mlflow()
    report = report or SyncReport()
    local, remote = MlflowClient(tracking_uri=local_uri), MlflowClient(tracking_uri=remote_uri)
    parent = local.get_run(parent_run_id)
    experiment = local.get_experiment(parent.info.experiment_id)
    found = remote.get_experiment_by_name(experiment.name)
    experiment_id = found.experiment_id if found is not None else remote.create_experiment(experiment.name)
    children = local.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    copied_any = False
    remote_parent = _remote_copy(remote, experiment_id, parent_run_id)
    if remote_parent is None:
        remote_parent = _copy_run(local, remote, parent, experiment_id, None)
        copied_any = True
    report.remote_ids[parent_run_id] = remote_parent
    for child in children:
        remote_child = _remote_copy(remote, experiment_id, child.info.run_id)
        if remote_child is None:
            remote_child = _copy_run(local, remote, child, experiment_id, remote_parent)
            copied_any = True
        report.remote_ids[child.info.run_id] = remote_child
    version = register_run(remote, remote_parent)  # a run that asks for it; registered once
    if version is not None:
        report.registered[parent_run_id] = f"models:/{version.name}/{version.version}"
    local.set_tag(parent_run_id, synced_tag(remote_uri), remote_parent)
    (report.uploaded if copied_any else report.already).append(parent_run_id)
    return report


def pending_runs(local_uri: str, remote_uri: str | None, include_all: bool) -> list[tuple[str, str]]:
    """(local parent run id, server uri) for every parent run not yet on its server."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from optimize.tracking.client import _quiet_mlflow

    _quiet_mlflow()
    local = MlflowClient(tracking_uri=local_uri)
    experiments = [e.experiment_id for e in local.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    pending = []
    for run in local.search_runs(experiments, max_results=50_000) if experiments else []:
        if "mlflow.parentRunId" in run.data.tags:
            continue
        target = remote_uri or run.data.tags.get(TARGET)
        if target is None or (TARGET not in run.data.tags and not include_all):
            continue
        synced_anywhere = any(tag.startswith("optimize.synced.") for tag in run.data.tags)
        done = synced_tag(target) in run.data.tags if remote_uri else synced_anywhere
        if not done:
            pending.append((run.info.run_id, target))
    return sorted(pending, key=lambda item: item[0])


def sync_pending(
    artifacts_dir: Path,
    remote_uri: str | None,
    include_all: bool,
    on_run: Callable[[str, str, SyncReport], None] | None = None,
) -> SyncReport:
    """Copy every buffered parent run to its server (remote_uri: one server for all), each under
    the local store's lock; on_run(local run id, server, report) after each. A server that fails
    stops the sync with an OptimizeError saying how many runs stay buffered."""
    from optimize.errors import OptimizeError
    from optimize.tracking.client import local_store_uri
    from optimize.tracking.offline import store_lock

    report = SyncReport()
    if not (artifacts_dir / "mlflow.db").is_file():
        return report
    report.local_store = artifacts_dir / "mlflow.db"
    local = local_store_uri(artifacts_dir)
    pending = pending_runs(local, remote_uri, include_all)
    for index, (run_id, target) in enumerate(pending):
        try:
            with store_lock(artifacts_dir):
                sync_run(local, target, run_id, report)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200]
            left = len(pending) - index
            raise OptimizeError(f"cannot sync to {target}: {reason}; {left} run(s) stay buffered") from exc
        if on_run is not None:
            on_run(run_id, target, report)
    return report
