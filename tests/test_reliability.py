"""Crash safety, interrupts, corruption, concurrency and hostile inputs, through the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optimize.store import ArtifactStore
from tests.conftest import REPO, run_cli, tiny_recipe_dict, wait_for_entry

pytestmark = pytest.mark.slow

LONG = tiny_recipe_dict(
    stages=[
        {"train": {"epochs": 2, "lr": 0.02, "batch_size": 16}},
        {"train": {"id": "finetune", "epochs": 40, "lr": 0.002, "batch_size": 4}},
        "export",
    ]
)


def _start(recipe: Path, artifacts: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optimize", "run", str(recipe), "--artifacts", str(artifacts), "--quiet"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`make test &`) inherits an ignored SIGINT, and Python
        # then installs no KeyboardInterrupt handler; the run under test gets the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _latest(artifacts: Path, name: str = "tiny") -> dict:
    run_id = (artifacts / name / "LATEST").read_text().strip()
    return json.loads((artifacts / name / run_id / "manifest.json").read_text())


def _store_is_consistent(artifacts: Path) -> None:
    store = ArtifactStore(artifacts / "store")
    for path in store.entries.glob("*.json"):
        assert store.get_entry(path.stem) is not None, f"entry {path.name} is not trustworthy"
    assert list(store.entries.glob(".*.tmp")) == []


def test_sigkill_mid_stage_leaves_nothing_trusted_and_the_next_run_resumes(write_recipe, artifacts):
    recipe = write_recipe(LONG)
    process = _start(recipe, artifacts)
    wait_for_entry(artifacts, "stage train")
    time.sleep(1.0)  # inside 'finetune' now
    process.kill()
    process.wait(60)
    _store_is_consistent(artifacts)
    assert not any(
        json.loads(p.read_text()).get("label") == "stage finetune"
        for p in (artifacts / "store" / "entries").glob("*.json")
    )

    short = dict(
        LONG,
        stages=[
            LONG["stages"][0],
            {"train": {"id": "finetune", "epochs": 1, "lr": 0.002, "batch_size": 4}},
            "export",
        ],
    )
    result = run_cli("run", str(write_recipe(short)), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 0, result.stderr
    assert [s["cached"] for s in _latest(artifacts)["steps"]] == [True, False, False]
    assert [
        p.name for p in (artifacts / "store" / "tmp").iterdir()
    ] == []  # the killed run's work was cleaned up


def test_ctrl_c_stops_cleanly_with_130_naming_the_stage(write_recipe, artifacts):
    process = _start(write_recipe(LONG), artifacts)
    wait_for_entry(artifacts, "stage train")
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted during stage 'finetune'" in stderr and "Traceback" not in stderr
    assert [p.name for p in (artifacts / "store" / "tmp").iterdir()] == []
    _store_is_consistent(artifacts)


def test_corrupted_store_object_is_detected_discarded_and_rebuilt(write_recipe, artifacts):
    recipe = write_recipe(tiny_recipe_dict())
    assert run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet").returncode == 0
    onnx_path = artifacts / _latest(artifacts)["steps"][1]["output"]["path"]  # relative to artifacts/
    onnx_path.write_bytes(onnx_path.read_bytes()[:-100])  # truncated
    result = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "does not match its hash" in result.stderr
    assert [s["cached"] for s in _latest(artifacts)["steps"]] == [True, False]
    _store_is_consistent(artifacts)


def test_concurrent_runs_share_one_store(write_recipe, artifacts):
    same = write_recipe(tiny_recipe_dict(), "a.yaml")
    other = write_recipe(
        dict(
            tiny_recipe_dict(),
            name="tiny-other",
            stages=[{"train": {"epochs": 2, "lr": 0.02, "batch_size": 16}}, "export"],
        ),
        "b.yaml",
    )
    processes = [_start(same, artifacts), _start(same, artifacts), _start(other, artifacts)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [o[1] for o in outputs]
    runs = sorted((artifacts / "tiny").glob("2*/manifest.json"))
    assert len(runs) == 2
    first, second = (json.loads(p.read_text()) for p in runs)
    assert first["steps"][-1]["output"]["hash"] == second["steps"][-1]["output"]["hash"]
    assert first["run_id"] != second["run_id"]
    assert _latest(artifacts, "tiny-other")["targets"][0]["status"] == "ok"
    _store_is_consistent(artifacts)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{artifacts / 'mlflow.db'}")
    parents = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(parents) == 3


# -- hostile and broken inputs ------------------------------------------------------------------


def test_onnx_file_failing_the_checker_is_a_validation_error(write_recipe, artifacts, tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07this is not a protobuf model")
    recipe = dict(tiny_recipe_dict(stages=[]), model={"source": "onnx:broken.onnx"})
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts))
    assert result.returncode == 2 and "is not a valid ONNX model" in result.stderr
    assert not artifacts.exists()


def test_labels_beyond_the_model_outputs_fail_before_training(write_recipe, artifacts):
    recipe = tiny_recipe_dict()
    recipe["model"]["args"]["num_classes"] = 5
    started = time.perf_counter()
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 2
    assert "labels go up to 9 but the model outputs 5 values per sample" in result.stderr
    assert "num_classes: 10" in result.stderr and "Traceback" not in result.stderr
    assert not list((artifacts / "store" / "entries").glob("*.json")) or time.perf_counter() - started < 60
    assert not any(
        json.loads(p.read_text()).get("label") == "stage train"
        for p in (artifacts / "store" / "entries").glob("*.json")
    )


def test_nan_from_a_stage_fails_it_with_a_clear_message(write_recipe, artifacts):
    recipe = tiny_recipe_dict(
        stages=[{"train": {"epochs": 2, "lr": 1.0, "optimizer": "sgd", "momentum": 0.0}}, "export"]
    )
    recipe["model"] = {
        "source": "python:tiny_models:nan_outputs",
        "input": {"name": "images", "shape": [1, 3, 8, 8]},
    }
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 3, result.stderr
    assert "stage 'train'" in result.stderr and (
        "nan" in result.stderr.lower() or "inf" in result.stderr.lower()
    )
    assert "Traceback" not in result.stderr
    assert [p.name for p in (artifacts / "store" / "tmp").iterdir()] == []


def test_data_with_nan_values_is_refused(write_recipe, artifacts, tmp_path):
    import numpy as np

    x = np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32)
    x[[3, 17]] = np.nan
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(40) % 10)
    recipe = tiny_recipe_dict()
    recipe["data"]["train"] = {"source": "npz", "path": "train.npz"}
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 2 and "data.train: 2 samples contain NaN or infinite values" in result.stderr


def test_data_of_the_wrong_shape_is_a_clear_error(write_recipe, artifacts):
    recipe = tiny_recipe_dict()
    recipe["data"]["train"]["image_size"] = 16
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 2
    assert (
        "data.train: samples have shape [3, 16, 16] but model input 'images' expects [3, 8, 8]"
        in result.stderr
    )


def test_python_sources_are_not_imported_from_the_current_directory(write_recipe, artifacts, tmp_path):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "sneaky_models.py").write_text("raise SystemExit('imported from the current directory')\n")
    recipe = tiny_recipe_dict()
    recipe["model"]["source"] = "python:sneaky_models:build"
    result = run_cli("validate", str(write_recipe(recipe)), cwd=elsewhere)
    assert result.returncode == 2 and "no module 'sneaky_models'" in result.stderr


def test_device_class_names_cannot_reach_outside_the_artifacts_folder(write_recipe, artifacts):
    recipe = tiny_recipe_dict(
        targets=["../../escape"], device_classes=[{"name": "../../escape", "runtime": "onnxruntime"}]
    )
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts))
    assert result.returncode == 2 and "device_classes[0].name" in result.stderr
    assert not artifacts.exists()
