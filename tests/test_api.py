"""The Python API without the CLI: a run returns its outcome and prints nothing; rebuild, history
and report work on what it wrote, also after the artifacts folder has moved."""

from __future__ import annotations

import shutil

import pytest

import optimize
from optimize.errors import RecipeError, UsageError
from tests.conftest import tiny_recipe_dict


def test_load_recipe_from_a_mapping_resolves_paths_against_base_dir(tmp_path):
    (tmp_path / "tiny_models.py").write_text("")
    loaded = optimize.load_recipe(tiny_recipe_dict(), base_dir=tmp_path)
    assert loaded.path is None and loaded.base_dir == tmp_path.resolve()
    assert loaded.recipe.name == "tiny" and "name: tiny" in loaded.text


def test_a_bad_mapping_is_one_line_per_problem_naming_the_key(tmp_path):
    (tmp_path / "tiny_models.py").write_text("")
    with pytest.raises(RecipeError) as raised:
        optimize.load_recipe({**tiny_recipe_dict(), "stages": [{"trian": {}}]}, base_dir=tmp_path)
    assert str(raised.value).startswith("recipe mapping: stages[0].trian: unknown stage 'trian'")


def test_an_unknown_target_is_a_usage_error_before_anything_runs(tmp_path):
    (tmp_path / "tiny_models.py").write_text("")
    recipe = optimize.load_recipe(tiny_recipe_dict(), base_dir=tmp_path)
    with pytest.raises(UsageError, match="x86-cpu-onnxruntim: not a target of tiny .*did you mean"):
        optimize.run(recipe, artifacts=tmp_path / "a", targets=["x86-cpu-onnxruntim"])
    assert not (tmp_path / "a").exists()


def test_device_classes_say_what_this_host_can_do():
    statuses = optimize.device_classes()
    assert statuses["x86-cpu-onnxruntime"].availability.can_run
    assert statuses["x86-cpu-onnxruntime"].device_class.runtime == "onnxruntime"


@pytest.mark.slow
def test_run_rebuild_history_report_through_the_api(write_recipe, tmp_path, capfd):
    stages = [*tiny_recipe_dict()["stages"], {"quantize": {"precision": "int8"}}]
    path = write_recipe(tiny_recipe_dict(stages=stages, tracking={"enabled": False}))
    outcome = optimize.run(optimize.load_recipe(path), artifacts=tmp_path / "artifacts")

    assert capfd.readouterr() == ("", "")  # a library call prints nothing
    assert outcome.exit_code == 0 and outcome.passed and outcome.problems == []
    assert [step.stage for step in outcome.steps] == ["train", "export", "quantize"]
    (target,) = outcome.targets
    assert target.name == "x86-cpu-onnxruntime" and target.status == "ok"
    assert set(target.baselines) == {"fp32", "original"}
    assert target.metrics["speedup_vs_fp32"] > 0 and "accuracy_drop_vs_original" in target.metrics
    assert outcome.manifest_path == outcome.run_dir / "manifest.json"
    assert {p.name for p in outcome.files} == {"gates.json", "junit.xml", "summary.md", "report.html"}

    # A CI job uploads the artifacts folder; another machine reads it from elsewhere.
    moved = shutil.move(tmp_path / "artifacts", tmp_path / "elsewhere")
    report = optimize.report(artifacts=moved)
    assert report.is_file() and report.parent.parent.parent == moved
    rebuilt = optimize.rebuild("x86-cpu-onnxruntime", artifacts=moved)
    assert rebuilt.target.status == "ok" and rebuilt.source_run == outcome.run_id
    assert rebuilt.previous is not None and rebuilt.previous["run_id"] == outcome.run_id
    assert rebuilt.exit_code in (0, 1) and {c.metric for c in rebuilt.changes} >= {"accuracy"}
    builds = optimize.history(artifacts=moved, device_class="x86-cpu-onnxruntime")
    assert [b["kind"] for b in builds] == ["run", "rebuild"]
    assert capfd.readouterr() == ("", "")
