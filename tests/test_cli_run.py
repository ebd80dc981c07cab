"""End to end through the real CLI: a tiny recipe trains, exports, builds and evaluates for
x86 ONNX Runtime, logs to a SQLite MLflow store, and a second run does no work."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, tiny_recipe_dict

pytestmark = pytest.mark.slow


def _latest_manifest(artifacts, name="tiny"):
    run_id = (artifacts / name / "LATEST").read_text().strip()
    return json.loads((artifacts / name / run_id / "manifest.json").read_text())


def test_run_end_to_end_then_cached(write_recipe, artifacts):
    recipe = write_recipe(tiny_recipe_dict())
    first = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet")
    assert first.returncode == 0, first.stderr + first.stdout
    manifest = _latest_manifest(artifacts)
    assert [s["stage"] for s in manifest["steps"]] == ["train", "export"]
    assert not any(s["cached"] for s in manifest["steps"])
    export = manifest["steps"][1]
    assert export["metrics"]["parity_max_abs_diff"] < 1e-3
    assert export["metrics"]["accuracy"] > 0.5  # 3 epochs on 400 8×8 digits
    (target,) = manifest["targets"]
    assert target["status"] == "ok"
    metrics = target["metrics"]
    assert metrics["agreement_top1"] == 1.0  # the FP32 engine agrees with the FP32 reference
    assert metrics["accuracy"] == pytest.approx(export["metrics"]["accuracy"])
    assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p90_ms"] <= metrics["latency_p99_ms"]
    assert metrics["throughput_sps"] > 0
    # the worker's own memory: not the parent's peak (which holds torch), not the eval set
    assert 0 < metrics["engine_memory_mb"] < metrics["peak_memory_mb"] < 400
    assert target["engine"]["path"].endswith("model.ort.onnx")

    second = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet")
    assert second.returncode == 0, second.stderr
    again = _latest_manifest(artifacts)
    assert again["run_id"] != manifest["run_id"]
    assert all(s["cached"] for s in again["steps"])
    assert again["targets"][0]["build_cached"] and again["targets"][0]["evaluation_cached"]
    assert again["targets"][0]["engine"]["hash"] == target["engine"]["hash"]
    assert "2 steps (2 from cache)" in second.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{artifacts / 'mlflow.db'}")
    runs = client.search_runs([manifest["tracking"]["experiment_id"]])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(children) == 2
    child = next(
        r for r in children if r.info.run_id == manifest["tracking"]["target_runs"]["x86-cpu-onnxruntime"]
    )
    assert child.data.tags["device_class"] == "x86-cpu-onnxruntime"
    assert child.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    parent = client.get_run(manifest["tracking"]["parent_run_id"])
    assert parent.data.params["model.source"] == "python:tiny_models:tiny_cnn"
    assert "stage.00_train.accuracy" in parent.data.metrics
    history = client.get_metric_history(parent.info.run_id, "stage.00_train.train_loss")
    assert [m.step for m in history] == [1, 2, 3]
