"""The distill stage: the loss, feature matching across pruned channel counts, the teacher in the
cache key, recipe validation, and one end-to-end train → prune → distill → export run."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from optimize.cli import main
from optimize.stages.distill import FeatureMatcher, kd_loss
from optimize.stages.prune import PruneParams, prune_model
from tests.assets.tiny_models import tiny_cnn
from tests.conftest import run_cli, tiny_recipe_dict


def test_kd_loss_mixes_soft_and_hard_terms():
    torch.manual_seed(0)
    logits, other, labels = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert kd_loss(logits, other, labels, temperature=4.0, alpha=0.0) == pytest.approx(float(ce))
    assert kd_loss(logits, logits, labels, temperature=4.0, alpha=0.7) == pytest.approx(
        0.3 * float(ce), abs=1e-6
    )
    soft = torch.nn.functional.kl_div(
        torch.log_softmax(logits / 2, 1), torch.softmax(other / 2, 1), reduction="batchmean"
    )
    assert kd_loss(logits, other, labels, temperature=2.0, alpha=1.0) == pytest.approx(
        4 * float(soft), rel=1e-5
    )


def test_feature_matching_projects_pruned_channels_and_learns():
    teacher = tiny_cnn(width=32).eval()
    student = tiny_cnn(width=32)
    student.load_state_dict(teacher.state_dict())
    x = torch.randn(4, 3, 8, 8)
    prune_model(student, PruneParams(channel_ratio=0.5, round_to=4), (x[:1],))
    matcher = FeatureMatcher(student, teacher, {"stem": "stem", "pool": "pool", "fc": "fc"}, (x[:2],))
    stem, pool, fc = matcher.projections
    assert isinstance(stem, torch.nn.Conv2d) and (stem.in_channels, stem.out_channels) == (16, 32)
    assert isinstance(pool, torch.nn.Conv2d) and stem.kernel_size == (1, 1)
    assert isinstance(fc, torch.nn.Identity), "equal widths need no projection"
    student.train()
    student(x)
    with torch.no_grad():
        teacher(x)
    loss = matcher.loss()
    loss.backward()
    assert torch.isfinite(loss) and stem.weight.grad is not None and student.stem[0].weight.grad is not None
    matcher.close()
    student(x)
    assert not matcher.outputs, "closing removes the hooks"


def _recipe_with(*stages, **top):
    return tiny_recipe_dict(stages=[*stages, "export"], **top)


PRUNE = {"prune": {"channel_ratio": 0.5}}
BAD = [
    (
        "teacher that does not exist",
        _recipe_with({"train": {"epochs": 1}}, PRUNE, {"distill": {"teacher": "trian"}}),
        ["stages[2].distill.teacher", "no step 'trian'", "did you mean 'train'"],
    ),
    (
        "teacher that comes later",
        _recipe_with(PRUNE, {"distill": {"teacher": "late"}}, {"train": {"id": "late", "epochs": 1}}),
        ["stages[1].distill.teacher", "'late' comes at or after"],
    ),
    (
        "teacher is this step",
        _recipe_with(PRUNE, {"distill": {}}, {"distill": {"id": "again", "teacher": "again"}}),
        ["stages[2].distill.teacher", "comes at or after"],
    ),
    ("distill first, no teacher", _recipe_with({"distill": {}}), ["stages[0].distill.teacher", "no teacher"]),
    (
        "distill after export",
        tiny_recipe_dict(stages=["export", {"distill": {"teacher": "source"}}], targets=[]),
        ["stages[1].distill", "needs a torch model"],
    ),
    (
        "teacher and teacher_model",
        _recipe_with(PRUNE, {"distill": {"teacher": "source", "teacher_model": tiny_recipe_dict()["model"]}}),
        ["stages[1].distill.teacher", "not both"],
    ),
    (
        "teacher_model with a bad source",
        _recipe_with(PRUNE, {"distill": {"teacher_model": {"source": "torchvision:resnet19"}}}),
        ["stages[1].distill.teacher_model.source", "did you mean 'resnet18'"],
    ),
    (
        "unknown feature layer",
        _recipe_with(PRUNE, {"distill": {"feature_layers": {"stem": "stemm"}}}),
        ["stages[1].distill.feature_layers", "'stemm' is no layer of the teacher"],
    ),
    (
        "alpha above 1",
        _recipe_with(PRUNE, {"distill": {"alpha": 1.5}}),
        ["stages[1].distill.alpha", "less than or equal to 1"],
    ),
]


@pytest.mark.parametrize("description, content, fragments", BAD, ids=[c[0] for c in BAD])
def test_bad_distill_parameters_fail_validation(description, content, fragments, write_recipe):
    from optimize.errors import RecipeError
    from optimize.recipe.loader import load_recipe

    path = write_recipe(content)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} not in {error.value}"
    assert CliRunner().invoke(main, ["validate", str(path)]).exit_code == 2


def test_default_teachers(write_recipe):
    from optimize.recipe.loader import load_recipe
    from optimize.stages.distill import teacher_step

    recipe = load_recipe(
        write_recipe(
            _recipe_with({"train": {"epochs": 1}}, PRUNE, {"distill": {}}, {"distill": {"id": "d2"}})
        )
    ).recipe
    assert teacher_step(recipe.stages[2], recipe, 2) == "train", "the model before the first prune"
    assert teacher_step(recipe.stages[3], recipe, 3) == "train"
    only_train = load_recipe(write_recipe(_recipe_with({"train": {"epochs": 1}}, {"distill": {}}))).recipe
    assert teacher_step(only_train.stages[1], only_train, 1) == "train"
    prune_first = load_recipe(write_recipe(_recipe_with(PRUNE, {"distill": {}}))).recipe
    assert teacher_step(prune_first.stages[1], prune_first, 1) == "source"


def test_teacher_model_content_is_in_the_cache_key(write_recipe, tmp_path):
    from optimize.pipeline import Pipeline, RunOptions
    from optimize.recipe.loader import load_recipe

    weights = tmp_path / "teacher.pt"
    torch.manual_seed(1)
    torch.save(tiny_cnn(width=8).state_dict(), weights)
    teacher = {**tiny_recipe_dict()["model"], "weights": "teacher.pt"}
    recipe = tiny_recipe_dict(
        stages=[{"distill": {"teacher_model": teacher, "epochs": 1, "batch_size": 32}}], targets=[]
    )
    recipe["data"]["train"]["samples"] = 128
    path = write_recipe(recipe)
    options = RunOptions(artifacts_dir=tmp_path / "artifacts")
    first = Pipeline(load_recipe(path), options).run().steps[0]
    assert Pipeline(load_recipe(path), options).run().steps[0].cached
    torch.manual_seed(2)
    torch.save(tiny_cnn(width=8).state_dict(), weights)
    changed = Pipeline(load_recipe(path), options).run().steps[0]
    assert not changed.cached and changed.key != first.key
    assert changed.history["train_loss"] and "eval_accuracy" in changed.history


@pytest.mark.slow
def test_train_prune_distill_export_through_the_cli(write_recipe, artifacts):
    recipe = tiny_recipe_dict(
        model={**tiny_recipe_dict()["model"], "args": {"num_classes": 10, "width": 32}},
        stages=[
            {"train": {"epochs": 3, "lr": 0.02, "batch_size": 32}},
            {
                "prune": {
                    "target_macs": 0.3,
                    "global_pruning": True,
                    "importance": "taylor",
                    "taylor_samples": 64,
                    "round_to": 1,
                }
            },
            {"distill": {"epochs": 3, "lr": 0.01, "batch_size": 32, "feature_layers": {"block": "block"}}},
            {"export": {"opset": 17}},
        ],
    )
    result = run_cli("run", str(write_recipe(recipe)), "--artifacts", str(artifacts), "--quiet")
    assert result.returncode == 0, result.stderr + result.stdout
    run_id = (artifacts / "tiny" / "LATEST").read_text().strip()
    manifest = json.loads((artifacts / "tiny" / run_id / "manifest.json").read_text())
    train, prune, distill, export = manifest["steps"]
    assert 0.285 <= prune["metrics"]["macs_kept"] <= 0.3
    assert prune["metrics"]["macs"] == prune["metrics"]["macs_after"] < prune["metrics"]["macs_before"]
    assert prune["info"]["channels"]["fc"] == [10, 10]
    assert len(distill["history"]["eval_accuracy"]) == 3
    assert distill["metrics"]["accuracy"] > prune["metrics"]["accuracy"]
    assert distill["metrics"]["accuracy"] > 0.5
    # counted again on the ONNX graph: conv and linear MACs only (torch-pruning adds BN, ReLU, biases)
    assert 0.7 * prune["metrics"]["macs_after"] < export["metrics"]["macs"] < prune["metrics"]["macs_after"]
    assert manifest["targets"][0]["status"] == "ok"
