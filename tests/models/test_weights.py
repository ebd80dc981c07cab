"""Pretrained starts on a torchvision model: a state dict made for 1000 classes loads onto a
10-class model with its head replaced, `strict: false` reports keys instead of refusing them, and
`freeze` globs pick modules."""

from __future__ import annotations

import pytest
import torch
import torchvision
from click.testing import CliRunner

from optimize.cli import main
from optimize.errors import RecipeError
from optimize.models.base import open_source
from optimize.models.freeze import freeze, matching_modules
from optimize.models.weights import classifier_head, load_weights
from optimize.recipe.model_spec import ModelSpec

ARGS = {"width_mult": 0.25}


def imagenet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return torchvision.models.mobilenet_v2(num_classes=1000, **ARGS).state_dict()


def ten_classes() -> torch.nn.Module:
    return torchvision.models.mobilenet_v2(num_classes=10, **ARGS)


def test_a_head_sized_for_other_classes_is_replaced_and_the_rest_loaded():
    state = imagenet_state()
    model = ten_classes()
    before_head = model.classifier[1].weight.clone()
    report = load_weights(model, state, strict=True)
    assert classifier_head(model) == "classifier.1"
    assert report.replaced_head == "classifier.1" and report.head_outputs == (1000, 10)
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(model.features[0][0].weight, state["features.0.0.weight"])
    assert torch.equal(model.classifier[1].weight, before_head)  # left as built, 10 outputs
    assert "replaced the classifier head 'classifier.1' (1000 → 10 outputs)" in report.lines()[0]


def test_strict_false_reports_missing_and_unexpected_keys_instead_of_refusing():
    state = imagenet_state()
    state["extra.weight"] = torch.zeros(3)
    del state["features.1.conv.1.weight"]
    with pytest.raises(
        ValueError,
        match=r"1 keys missing from the file: features.1.conv.1.weight; 1 keys not in the model: extra.weight; set model.weights.strict: false",
    ):
        load_weights(ten_classes(), state, strict=True)
    report = load_weights(ten_classes(), state, strict=False)
    assert report.missing == ["features.1.conv.1.weight"] and report.unexpected == ["extra.weight"]
    assert report.replaced_head == "classifier.1"


def test_a_mismatch_outside_the_head_is_an_error_naming_the_tensor():
    state = imagenet_state()
    state["features.0.0.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(
        ValueError, match=r"features.0.0.weight has shape \[4, 3, 3, 3\] in the file but \[8, 3, 3, 3\]"
    ):
        load_weights(ten_classes(), state, strict=False)


def test_model_weights_in_a_recipe_load_through_the_source_and_report(tmp_path):
    state = imagenet_state()
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "imagenet.pt")
    spec = {
        "source": "torchvision:mobilenet_v2",
        "args": {"num_classes": 10, **ARGS},
        "input": {"shape": [1, 3, 32, 32]},
        "weights": {"path": "imagenet.pt", "strict": False},
    }
    source = open_source(ModelSpec.model_validate(spec, context={"base_dir": tmp_path}), tmp_path)
    model = source.pretrained()
    assert torch.equal(model.features[1].conv[0][0].weight, state["features.1.conv.0.0.weight"])
    assert source.weights_report.unexpected == ["extra.weight"]
    assert source.weights_report.record()["replaced_head"] == "classifier.1"

    strict = open_source(
        ModelSpec.model_validate({**spec, "weights": "imagenet.pt"}, context={"base_dir": tmp_path}), tmp_path
    )
    with pytest.raises(
        RecipeError, match=r"model.weights: .*imagenet.pt: 1 keys not in the model: extra.weight"
    ):
        strict.pretrained()


def test_freeze_globs_pick_the_outermost_matching_modules():
    model = ten_classes()
    assert list(matching_modules(model, ["features.1*"])) == [
        "features.1",
        "features.10",
        "features.11",
        "features.12",
        "features.13",
        "features.14",
        "features.15",
        "features.16",
        "features.17",
        "features.18",
    ]
    frozen = freeze(model, ["features"])
    assert list(frozen) == ["features"]
    assert not any(p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_a_freeze_glob_matching_nothing_is_a_recipe_error(write_recipe):
    from tests.conftest import tiny_recipe_dict

    recipe = tiny_recipe_dict(stages=[{"train": {"epochs": 1, "freeze": ["backbone.*"]}}], targets=[])
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    assert "stages[0].train.freeze: 'backbone.*' matches no module of the model" in result.output
