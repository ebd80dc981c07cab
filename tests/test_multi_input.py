"""A model with two inputs and two outputs end to end (recipes/masked-digits-two-inputs.yaml):
trained, exported, quantized with NNCF, built and scored on ONNX Runtime and OpenVINO, every
step fed by input name, accuracy on `eval_output` and the other output compared with FP32."""

from __future__ import annotations

import pytest
import yaml

import optimize
from optimize.errors import RecipeError
from tests.conftest import REPO, tiny_recipe_dict

RECIPE = REPO / "recipes" / "masked-digits-two-inputs.yaml"


@pytest.mark.slow
def test_two_inputs_two_outputs_through_both_cpu_runtimes(tmp_path):
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["stages"][0]["train"]["epochs"] = 3
    recipe["stages"][2] = {"quantize": {"precision": "int8", "backend": "nncf"}}
    recipe.update(
        gates={
            "min_speedup": None
        },  # about feeding by name, not speed: a 1 M-MAC model's INT8 is overhead-bound
        evaluation=tiny_recipe_dict()["evaluation"],
        tracking={"enabled": False},
    )
    outcome = optimize.run(optimize.load_recipe(recipe, base_dir=RECIPE.parent), artifacts=tmp_path)

    assert outcome.exit_code == 0, outcome.problems
    export = next(step for step in outcome.steps if step.stage == "export")
    assert export.metrics["parity_max_abs_diff"] < 1e-3  # both outputs checked against torch
    for target in outcome.targets:
        assert target.status == "ok", (target.name, target.reason)
        assert target.metrics["accuracy"] > 0.5  # scored on the logits, not the features
        assert target.metrics["agreement_top1"] > 0.8
        assert target.metrics["cosine_mean.features"] > 0.95  # the other output, against FP32
        assert target.baselines["fp32"].metrics["accuracy"] > 0.5


def test_a_model_declaring_one_of_its_two_inputs_is_refused_before_any_stage(tmp_path):
    """Declared inputs are what forward() is called with: one missing is named when the model is
    built, not a TypeError from export minutes later."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["model"]["inputs"] = recipe["model"]["inputs"][:1]
    recipe["tracking"] = {"enabled": False}
    with pytest.raises(RecipeError) as error:
        optimize.run(optimize.load_recipe(recipe, base_dir=RECIPE.parent), artifacts=tmp_path)
    assert str(error.value).endswith(
        "model.inputs: MaskedDigitNet.forward(image, mask) takes 2 inputs but the recipe declares 1 "
        "(image); declare each under model.inputs, in forward() order"
    )


def test_forward_arity_accepts_defaults_and_var_positional():
    from torch import nn

    from optimize.model_io import forward_arity_problem

    class Optional(nn.Module):
        def forward(self, image, mask=None):
            return image

    class Variadic(nn.Module):
        def forward(self, *inputs):
            return inputs[0]

    assert forward_arity_problem(Optional(), ["image"]) is None
    assert forward_arity_problem(Optional(), ["image", "mask"]) is None
    assert "takes 1 to 2 inputs but the recipe declares 3" in forward_arity_problem(
        Optional(), ["a", "b", "c"]
    )
    assert forward_arity_problem(Variadic(), ["a", "b", "c"]) is None
