"""MLflow logging: one parent run per `optimize run`, one child run per target.

A thin adapter over MlflowClient with explicit run ids (no global "active run" state), so the
pipeline can log from anywhere and a failure to log never breaks a build.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_PARAM_VALUE = 6000


def local_store_uri(artifacts_dir: Path) -> str:
    """The SQLite store in the artifacts folder: the default destination and the offline buffer."""
    return f"sqlite:///{(artifacts_dir / 'mlflow.db').resolve()}"


def resolve_tracking_uri(cli_uri: str | None, artifacts_dir: Path) -> str:
    """--tracking-uri, then MLFLOW_TRACKING_URI, then a SQLite file in the artifacts folder."""
    if cli_uri:
        return cli_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return local_store_uri(artifacts_dir)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': [1, 2]}} → {'a.b.0': '1', 'a.b.1': '2'}; None values are dropped."""
    items: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, inner in value.items():
            items.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            items.update(flatten(inner, f"{prefix}.{index}" if prefix else str(index)))
    elif value is not None:
        items[prefix] = str(value)[:MAX_PARAM_VALUE]
    return items


def metric_key(*parts: str) -> str:
    """MLflow accepts letters, digits, '_', '-', '.', ' ', '/' in keys."""
    return ".".join(parts).replace(":", "_")


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Fail fast when a server is down: results are buffered locally and synced later, so minutes
    # of retries (MLflow's default) would only delay the build.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    import mlflow  # noqa: F401  (configures its loggers on import; we lower them after)

    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    def __init__(self, uri: str, experiment: str, artifacts_dir: Path):
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None
            if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
                location = (artifacts_dir / "mlruns").resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    @classmethod
    def for_experiment_id(cls, uri: str, experiment_id: str) -> Tracker:
        """A tracker for an experiment that exists already (to add to a logged run)."""
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        tracker = cls.__new__(cls)
        tracker.uri, tracker.client, tracker.experiment_id = (
            uri,
            MlflowClient(tracking_uri=uri),
            experiment_id,
        )
        return tracker

    @classmethod
    def for_experiment_name(cls, uri: str, name: str) -> Tracker:
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        return cls.for_experiment_id(uri, client.get_experiment_by_name(name).experiment_id)

    def start_run(self, name: str, tags: Mapping[str, str], parent: str | None = None) -> str:
        tags = dict(tags)
        if parent:
            tags["mlflow.parentRunId"] = parent
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        entries = [Param(key[:250], value) for key, value in params.items()]
        for start in range(0, len(entries), 100):
            self.client.log_batch(run_id, params=entries[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        ]
        for start in range(0, len(entries), 500):
            self.client.log_batch(run_id, metrics=entries[start : start + 500])

    def log_series(self, run_id: str, key: str, values: list[float]) -> None:
        for step, value in enumerate(values, start=1):
            self.log_metrics(run_id, {key: value}, step=step)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def run_url(self, run_id: str) -> str:
        """A link for people: the UI page on a server, else the store URI with the run id."""
        if self.uri.startswith("http"):
            return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}"
        return f"{self.uri}#experiment={self.experiment_id}&run={run_id}"
