"""What a run does again and what it takes from the cache, through the API (the command line's
own end-to-end test is tests/test_cli_run.py)."""

from __future__ import annotations

import pytest

import optimize
from optimize.errors import OptimizeError
from tests.conftest import tiny_recipe_dict

pytestmark = pytest.mark.slow

STAGES = [{"train": {"epochs": 1, "lr": 0.01}}, {"export": {"opset": 17}}]


def _run(path, artifacts, **options):
    return optimize.run(optimize.load_recipe(path), artifacts=artifacts, **options)


def test_changing_a_stage_reruns_it_and_what_follows(write_recipe, artifacts):
    recipe = tiny_recipe_dict(stages=STAGES, tracking={"enabled": False})
    path = write_recipe(recipe)
    assert _run(path, artifacts).exit_code == 0
    recipe["stages"][1]["export"]["opset"] = 18
    write_recipe(recipe)
    again = _run(path, artifacts)
    assert again.exit_code == 0 and [s.cached for s in again.steps] == [True, False]
    assert again.targets[0].build_cached is False

    forced = _run(path, artifacts, no_cache=True)
    assert forced.exit_code == 0 and [s.cached for s in forced.steps] == [False, False]


def test_the_models_interface_is_in_the_keys(write_recipe, artifacts):
    """Renaming an output re-exports (the delivered file has the new name) but does not retrain;
    an input shape the data no longer fits is refused from the cache as without it (exit 2)."""
    import onnx

    recipe = tiny_recipe_dict(stages=STAGES, tracking={"enabled": False})
    path = write_recipe(recipe)
    assert _run(path, artifacts).exit_code == 0
    recipe["model"]["output_name"] = "scores"
    write_recipe(recipe)
    renamed = _run(path, artifacts)
    assert renamed.exit_code == 0 and [s.cached for s in renamed.steps] == [True, False]
    delivered = onnx.load(str(renamed.run_dir / "outputs" / "model.onnx"))
    assert [o.name for o in delivered.graph.output] == ["scores"]

    recipe["model"]["input"]["shape"] = [1, 3, 16, 16]  # the data is 8×8
    write_recipe(recipe)
    with pytest.raises(OptimizeError, match=r"model input 'images' expects \[3, 16, 16\]") as refused:
        _run(path, artifacts)
    assert refused.value.exit_code == 2
