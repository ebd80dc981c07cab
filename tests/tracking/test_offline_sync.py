"""Offline-first tracking against a real `mlflow server` on localhost: runs reach the server;
a server stopped mid-run loses nothing (the run is buffered locally); `optimize sync` uploads
buffered runs exactly once, also after a sync that died halfway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli, tiny_recipe_dict, wait_for_entry
from tests.tracking.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow-server")
    server.root.mkdir()
    server.start()
    yield server
    server.stop()


def _manifest(artifacts: Path, name: str = "tiny") -> dict:
    run_id = (artifacts / name / "LATEST").read_text().strip()
    return json.loads((artifacts / name / run_id / "manifest.json").read_text())


def test_runs_reach_the_server_and_survive_it_going_down(server, write_recipe, artifacts):
    recipe = write_recipe(tiny_recipe_dict())
    online = run_cli(
        "run", str(recipe), "--artifacts", str(artifacts), "--quiet", "--tracking-uri", server.uri
    )
    assert online.returncode == 0, online.stderr
    remote = _manifest(artifacts)["tracking"]["remote"]
    assert remote["uri"] == server.uri
    on_server = server.runs("tiny")
    assert remote["parent_run_id"] in {r.info.run_id for r in on_server}
    assert len(on_server) == 2  # parent + one target

    # A second run; the server dies while it trains.
    slower = tiny_recipe_dict(
        stages=[
            {"train": {"epochs": 3, "lr": 0.02, "batch_size": 16}},
            {"train": {"id": "finetune", "epochs": 8, "lr": 0.002, "batch_size": 8}},
            "export",
        ]
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optimize",
            "run",
            str(write_recipe(slower)),
            "--artifacts",
            str(artifacts),
            "--quiet",
            "--tracking-uri",
            server.uri,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_entry(artifacts, "stage train")
    server.stop()
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert "unreachable" in stderr and "optimize sync" in stderr
    buffered = _manifest(artifacts)
    assert buffered["tracking"]["buffered_for"] == server.uri and "remote" not in buffered["tracking"]
    while_down = run_cli("sync", "--artifacts", str(artifacts))
    assert while_down.returncode == 3 and "1 run(s) stay buffered" in while_down.stderr

    server.start()
    first = run_cli("sync", "--artifacts", str(artifacts))
    assert first.returncode == 0, first.stderr
    assert "synced 1 run(s)" in first.stdout
    runs = server.runs("tiny")
    assert len(runs) == 4
    parent = next(
        r
        for r in runs
        if r.data.tags.get("optimize.run_id") == buffered["run_id"]
        and "mlflow.parentRunId" not in r.data.tags
    )
    assert parent.data.params["stages.1.train.id"] == "finetune"
    history = server.client().get_metric_history(parent.info.run_id, "stage.01_finetune.train_loss")
    assert [m.step for m in history] == list(range(1, 9))
    assert parent.data.tags["optimize.recipe"] == "tiny" and parent.info.status == "FINISHED"
    artifacts_listed = {a.path for a in server.client().list_artifacts(parent.info.run_id)}
    assert {"manifest.json", "recipe", "report"} <= artifacts_listed
    child = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert child.data.tags["device_class"] == "x86-cpu-onnxruntime" and "latency_p50_ms" in child.data.metrics

    second = run_cli("sync", "--artifacts", str(artifacts))
    assert second.returncode == 0 and "nothing to sync" in second.stdout
    assert len(server.runs("tiny")) == 4


def test_a_sync_that_died_halfway_is_redone_without_duplicates(server, write_recipe, artifacts):
    from mlflow.tracking import MlflowClient

    from optimize.tracking.client import local_store_uri
    from optimize.tracking.sync import COMPLETE, sync_run, synced_tag

    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = run_cli(
        "run",
        str(write_recipe(tiny_recipe_dict())),
        "--artifacts",
        str(artifacts),
        "--quiet",
        "--tracking-uri",
        dead,
    )
    assert result.returncode == 0 and "buffered" in result.stderr
    local_run = _manifest(artifacts)["tracking"]["parent_run_id"]
    report = sync_run(local_store_uri(artifacts), server.uri, local_run)
    # Make the server copy look like a sync killed before it finished, and forget it locally.
    server.client().delete_tag(report.remote_ids[local_run], COMPLETE)
    MlflowClient(local_store_uri(artifacts)).delete_tag(local_run, synced_tag(server.uri))

    again = run_cli("sync", "--artifacts", str(artifacts), "--tracking-uri", server.uri)
    assert again.returncode == 0, again.stderr
    runs = server.runs("tiny")
    assert len(runs) == 2 and all(r.data.tags.get(COMPLETE) == "true" for r in runs)
    assert report.remote_ids[local_run] not in {r.info.run_id for r in runs}  # the half copy was replaced
