"""Targets this host cannot build, --require-targets, --target selection, listings, and a local
MLflow store that cannot be written."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_cli, tiny_recipe_dict

pytestmark = pytest.mark.slow


def _latest(artifacts, name="tiny"):
    run_id = (artifacts / name / "LATEST").read_text().strip()
    return json.loads((artifacts / name / run_id / "manifest.json").read_text())


def test_unbuildable_target_is_skipped_with_its_reason_unless_required(write_recipe, artifacts):
    recipe = write_recipe(tiny_recipe_dict(targets=["x86-cpu-onnxruntime", "jetson-orin-tensorrt"]))
    result = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 0, result.stderr
    targets = {t["name"]: t for t in _latest(artifacts)["targets"]}
    assert targets["x86-cpu-onnxruntime"]["status"] == "ok"
    assert targets["jetson-orin-tensorrt"]["status"] == "skipped"
    assert "tensorrt" in targets["jetson-orin-tensorrt"]["reason"].lower()
    assert "jetson-orin-tensorrt: skipped" in result.stdout

    required = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet", "--require-targets")
    assert required.returncode == 3
    assert "target 'jetson-orin-tensorrt' skipped" in required.stderr

    only = run_cli(
        "run", str(recipe), "--artifacts", str(artifacts), "--quiet", "--target", "x86-cpu-onnxruntime"
    )
    assert only.returncode == 0 and [t["name"] for t in _latest(artifacts)["targets"]] == [
        "x86-cpu-onnxruntime"
    ]
    unknown = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--target", "x86-cpu-onnxruntim")
    assert unknown.returncode == 2 and "did you mean 'x86-cpu-onnxruntime'" in unknown.stderr


def test_rebuild_of_a_run_whose_model_left_the_store_is_a_clear_error(write_recipe, artifacts):
    assert (
        run_cli(
            "run", str(write_recipe(tiny_recipe_dict())), "--artifacts", str(artifacts), "--quiet"
        ).returncode
        == 0
    )
    shutil.rmtree(artifacts / "store" / "objects")
    result = run_cli(
        "rebuild", "--device-class", "x86-cpu-onnxruntime", "--artifacts", str(artifacts), "--quiet"
    )
    assert (
        result.returncode == 3
        and "no longer in the store" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_an_unwritable_local_mlflow_store_does_not_lose_the_build(write_recipe, artifacts):
    (artifacts / "mlflow.db").mkdir(parents=True)  # a folder where the SQLite file should be
    result = run_cli("run", str(write_recipe(tiny_recipe_dict())), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "could not log to the local MLflow store" in result.stderr
    assert _latest(artifacts)["targets"][0]["status"] == "ok"


def test_listings():
    stages = run_cli("stages")
    assert (
        stages.returncode == 0
        and "train" in stages.stdout
        and "export" in stages.stdout
        and "epochs" in stages.stdout
    )
    targets = run_cli("targets")
    assert targets.returncode == 0
    for name in (
        "x86-cpu-onnxruntime",
        "arm64-cpu-onnxruntime",
        "intel-cpu-openvino",
        "jetson-orin-tensorrt",
        "jetson-orin-nano-tensorrt",
        "t4-tensorrt",
        "ampere-plus-tensorrt",
    ):
        assert name in targets.stdout
