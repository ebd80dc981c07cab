"""A CLI that guides: every name given on the command line that matches nothing gets one line
with the closest name, and an error names the flag that fixes it. Nothing here runs a recipe."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from optimize.build_history import append, target_record
from optimize.cli import main
from tests.conftest import tiny_recipe_dict


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _fake_run(artifacts, recipe_path, run_id: str, name: str = "tiny") -> None:
    """What `find_run` and `rebuild` read of a run before any work: LATEST and the manifest's recipe."""
    folder = artifacts / name / run_id
    folder.mkdir(parents=True)
    record = {"path": str(recipe_path), "base_dir": str(recipe_path.parent), "given": tiny_recipe_dict()}
    (folder / "manifest.json").write_text(json.dumps({"run_id": run_id, "recipe": record}))
    (artifacts / name / "LATEST").write_text(run_id)


def _record_build(artifacts, recipe: str, device_class: str) -> None:
    target = SimpleNamespace(
        name=device_class,
        metrics={"accuracy": 0.9},
        runtime="onnxruntime",
        runtime_version="1.0",
        engine=None,
        status="ok",
        reason="",
    )
    append(artifacts.resolve(), target_record(recipe, "20260101-000000-aaaaaa", "run", target, "0" * 64))


def test_report_outside_the_runs_folder_says_to_pass_artifacts(tmp_path, monkeypatch):
    monkeypatch.delenv("OPTIMIZE_ARTIFACTS", raising=False)  # the default: ./artifacts
    monkeypatch.chdir(tmp_path)
    result = _invoke("report")
    assert result.exit_code == 2
    assert f"no runs in {tmp_path / 'artifacts'}: pass --artifacts DIR" in result.output


def test_latest_among_several_recipes_asks_for_recipe(tmp_path, write_recipe, artifacts):
    recipe = write_recipe(tiny_recipe_dict())
    _fake_run(artifacts, recipe, "20260101-000000-aaaaaa", name="one")
    _fake_run(artifacts, recipe, "20260101-000000-bbbbbb", name="two")
    result = _invoke("report", "--artifacts", str(artifacts))
    assert result.exit_code == 2
    assert f"'latest' needs --recipe NAME: {artifacts} holds runs of 2 recipes (one, two)" in result.output


def test_a_misspelt_recipe_or_run_id_gets_the_closest_one(write_recipe, artifacts):
    _fake_run(artifacts, write_recipe(tiny_recipe_dict()), "20260101-000000-aaaaaa")
    recipe = _invoke("report", "--recipe", "tinny", "--artifacts", str(artifacts))
    assert recipe.exit_code == 2
    assert "no runs of recipe 'tinny'" in recipe.output and "(did you mean 'tiny'?)" in recipe.output
    assert "--recipe" in recipe.output and "--artifacts DIR" in recipe.output

    run = _invoke("report", "20260101-000000-aaaaab", "--artifacts", str(artifacts))
    assert run.exit_code == 2
    assert "no run '20260101-000000-aaaaab'" in run.output
    assert "(did you mean '20260101-000000-aaaaaa'?)" in run.output


def test_rebuild_of_a_misspelt_device_class_gets_the_closest_one(write_recipe, artifacts):
    _fake_run(artifacts, write_recipe(tiny_recipe_dict()), "20260101-000000-aaaaaa")
    result = _invoke("rebuild", "--device-class", "x86-cpu-onnxruntim", "--artifacts", str(artifacts))
    assert result.exit_code == 2
    assert "--device-class x86-cpu-onnxruntim: unknown (did you mean 'x86-cpu-onnxruntime'?)" in result.output


def test_history_of_a_misspelt_device_class_is_an_error_not_an_empty_history(artifacts):
    result = _invoke("history", "--device-class", "x86-cpu-onnxruntim", "--artifacts", str(artifacts))
    assert result.exit_code == 2
    assert "--device-class x86-cpu-onnxruntim: unknown (did you mean 'x86-cpu-onnxruntime'?)" in result.output


def test_history_knows_device_classes_and_recipes_from_what_was_recorded(artifacts):
    _record_build(artifacts, "tiny", "my-board")  # a class a recipe defined
    recorded = _invoke("history", "--device-class", "my-board", "--artifacts", str(artifacts))
    assert recorded.exit_code == 0 and "my-board" in recorded.output
    board = _invoke("history", "--device-class", "my-bord", "--artifacts", str(artifacts))
    assert board.exit_code == 2 and "(did you mean 'my-board'?)" in board.output
    recipe = _invoke("history", "--recipe", "tinny", "--artifacts", str(artifacts))
    assert recipe.exit_code == 2
    assert "--recipe tinny: no builds of it" in recipe.output and "(did you mean 'tiny'?)" in recipe.output


def test_history_of_a_known_class_without_builds_says_where_it_looked(artifacts):
    result = _invoke("history", "--device-class", "intel-cpu-openvino", "--artifacts", str(artifacts))
    assert result.exit_code == 0
    assert f"no builds recorded in {artifacts / 'history'} on intel-cpu-openvino" in result.output
    assert "--artifacts DIR" in result.output


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("x86-cpu-onnxruntim", "(did you mean 'x86-cpu-onnxruntime'?); its targets: x86-cpu-onnxruntime"),
        # not among the recipe's targets, but close to a device class
        ("intel-cpu-openvin", "(did you mean 'intel-cpu-openvino'?); its targets: x86-cpu-onnxruntime"),
        # a device class the recipe does not build
        ("intel-cpu-openvino", "to build intel-cpu-openvino, add it to the recipe's targets"),
    ],
)
def test_run_of_a_target_the_recipe_lacks_gets_the_closest_one(write_recipe, artifacts, given, expected):
    recipe = write_recipe(tiny_recipe_dict())
    result = _invoke("run", str(recipe), "--artifacts", str(artifacts), "--target", given)
    assert result.exit_code == 2
    assert f"--target {given}: not a target of {recipe}" in result.output and expected in result.output
    assert not artifacts.exists()
