"""The prune stage: real torch-pruning on torchvision and tiny models, targets, the save/load
round trip through torch_io, and recipe validation of its parameters."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from click.testing import CliRunner

from optimize.cli import main
from optimize.stages.prune import PruneParams, output_layer, prune_model, report_metrics, search_steps
from optimize.torch_io import load_into, save_module
from tests.assets.tiny_models import tiny_cnn
from tests.conftest import tiny_recipe_dict


def _torchvision(name: str) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=10).eval()


def _export_and_run(model: torch.nn.Module, x: torch.Tensor, path) -> torch.Tensor:
    import onnxruntime as ort

    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_pruned_torchvision_model_runs_exports_and_round_trips(name, tmp_path):
    model = _torchvision(name)
    x = torch.randn(2, 3, 32, 32)
    report = prune_model(model, PruneParams(channel_ratio=0.5), (x[:1],))

    assert report.after["macs"] < 0.5 * report.before["macs"]
    assert report.after["params"] < report.before["params"]
    head = output_layer(model, (x[:1],))
    assert report.channels[head] == [10, 10], "the classifier head keeps its outputs"
    assert any(after < before for before, after in report.channels.values())
    with torch.inference_mode():
        expected = model(x)
    assert expected.shape == (2, 10)
    torch.testing.assert_close(
        _export_and_run(model, x, tmp_path / "model.onnx"), expected, atol=1e-4, rtol=1e-4
    )

    save_module(model, tmp_path / "model.pt")
    reloaded = load_into(_torchvision(name), tmp_path / "model.pt")
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x), expected, atol=0, rtol=0)
    assert sum(p.numel() for p in reloaded.parameters()) == report.after["params"]


TARGETS = [
    ({"target_macs": 0.25, "global_pruning": True}, "macs"),
    ({"target_macs": 0.4}, "macs"),
    ({"target_params": 0.3, "importance": "lamp", "global_pruning": True}, "params"),
]


@pytest.mark.parametrize("params, measure", TARGETS)
def test_search_meets_target_within_tolerance_in_one_pruning(params, measure):
    x = (torch.randn(1, 3, 8, 8),)
    model = tiny_cnn(width=64)
    reference = copy.deepcopy(model)
    tasks = []

    @contextlib.contextmanager
    def task(description, total):
        tasks.append([description, total, 0])
        yield lambda n=1, status="": tasks[-1].__setitem__(2, tasks[-1][2] + n)

    report = prune_model(model, PruneParams(**params, round_to=1), x, task=task)
    share = next(v for k, v in params.items() if k.startswith("target"))
    kept = report.after[measure] / report.before[measure]
    assert share * 0.95 <= kept <= share, kept
    assert report.steps == 1
    assert tasks[0] == ["channel ratio search", search_steps(128, 0.9), report.search_iterations]
    assert 1 < report.search_iterations <= search_steps(128, 0.9)

    # The ratio the search found, given as channel_ratio, prunes the same channels.
    ratio = {k: v for k, v in params.items() if not k.startswith("target")}
    again = prune_model(reference, PruneParams(**ratio, channel_ratio=report.channel_ratio, round_to=1), x)
    assert again.channels == report.channels
    assert again.after == report.after
    assert again.search_iterations == 0


def test_iterative_steps_towards_a_target_step_until_met():
    report = prune_model(
        tiny_cnn(width=64),
        PruneParams(target_macs=0.25, global_pruning=True, round_to=1, iterative_steps=60),
        (torch.randn(1, 3, 8, 8),),
    )
    assert 0.25 * 0.95 <= report.after["macs"] / report.before["macs"] <= 0.25
    assert 1 < report.steps < 60, "stepping stops once the target is met"
    assert report.search_iterations == 0
    assert report.channel_ratio == pytest.approx(0.9 * report.steps / 60)


@pytest.mark.parametrize(
    "steps, message", [(None, "the next step, 0.5156, overshoots"), (40, "the last step overshot")]
)
def test_overshooting_target_is_an_error_not_a_silent_miss(steps, message):
    """64 channels in steps of 8 cannot land within 5% of 25% of the MACs."""
    with pytest.raises(ValueError, match=message):
        prune_model(
            tiny_cnn(width=64),
            PruneParams(target_macs=0.25, iterative_steps=steps),
            (torch.randn(1, 3, 8, 8),),
        )


def test_unreachable_target_is_an_error_before_the_model_is_touched():
    model = tiny_cnn(width=64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="target_macs 0.05: the most pruning allowed keeps 0.2"):
        prune_model(model, PruneParams(target_macs=0.05, max_channel_ratio=0.5), (torch.randn(1, 3, 8, 8),))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_global_pruning_in_one_pruning_keeps_max_channel_ratio_per_layer():
    model = tiny_cnn(width=64)
    with torch.no_grad():
        # 60 of block.0's channels rank below all others (scores are relative to their group's mean).
        model.block[1].weight[4:].mul_(1e-3)
    report = prune_model(
        model,
        PruneParams(
            channel_ratio=0.5, importance="bn_scale", global_pruning=True, max_channel_ratio=0.75, round_to=1
        ),
        (torch.randn(1, 3, 8, 8),),
    )
    assert report.channels["block.0"] == [64, 16]
    assert report.channels["stem.0"] == [64, 48]  # the ratio's other 48 positions


def test_report_metrics_name_the_ratio_and_the_search():
    report = prune_model(
        tiny_cnn(width=64), PruneParams(target_macs=0.4, round_to=1), (torch.randn(1, 3, 8, 8),)
    )
    metrics = report_metrics(report)
    assert metrics["channel_ratio"] == report.channel_ratio > 0
    assert metrics["search_iterations"] == report.search_iterations > 0
    assert metrics["pruning_steps"] == 1
    assert metrics["macs_kept"] == report.after["macs"] / report.before["macs"]


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "lamp"])
def test_each_data_free_importance_prunes_every_layer_evenly(importance):
    model = tiny_cnn(width=32)
    report = prune_model(
        model, PruneParams(channel_ratio=0.5, importance=importance), (torch.randn(1, 3, 8, 8),)
    )
    assert {name: after for name, (_, after) in report.channels.items()} == {
        "stem.0": 16,
        "block.0": 16,
        "block.3": 16,
        "fc": 10,
    }
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_ignored_layers_by_glob_and_taylor_importance():
    from optimize.data.digits import DigitsData

    data = DigitsData(source="digits", split="train", image_size=8).load(None)
    batches = [
        lambda model, i=i: torch.nn.functional.cross_entropy(
            model(data.inputs[i : i + 32]), data.labels[i : i + 32]
        )
        for i in range(0, 128, 32)
    ]
    model = tiny_cnn(width=32)
    params = PruneParams(channel_ratio=0.5, importance="taylor", ignored_layers=["block.0*"], round_to=4)
    report = prune_model(model, params, (torch.randn(1, 3, 8, 8),), batches)
    assert report.channels["block.0"] == [32, 32]
    assert report.channels["stem.0"] == [32, 16]
    assert set(report.ignored) == {"block.0", "fc"}
    assert model(torch.randn(3, 3, 8, 8)).shape == (3, 10)


def _recipe_with(*stages, data=None):
    recipe = tiny_recipe_dict(stages=[*stages, "export"])
    if data is not None:
        recipe["data"] = data
    return recipe


BAD = [
    (
        "ratio above 1",
        _recipe_with({"prune": {"channel_ratio": 1.5}}),
        ["stages[0].prune.channel_ratio", "less than 1"],
    ),
    (
        "ratio 0",
        _recipe_with({"prune": {"channel_ratio": 0}}),
        ["stages[0].prune.channel_ratio", "greater than 0"],
    ),
    (
        "macs target of 1",
        _recipe_with({"prune": {"target_macs": 1.0}}),
        ["stages[0].prune.target_macs", "less than 1"],
    ),
    (
        "two targets",
        _recipe_with({"prune": {"channel_ratio": 0.5, "target_macs": 0.3}}),
        ["prune.target_macs", "exactly one"],
    ),
    ("no target", _recipe_with({"prune": {}}), ["prune.channel_ratio", "exactly one"]),
    (
        "ratio above the cap",
        _recipe_with({"prune": {"channel_ratio": 0.8, "max_channel_ratio": 0.5}}),
        ["prune.channel_ratio", "max_channel_ratio"],
    ),
    (
        "unmatched ignored layer",
        _recipe_with({"prune": {"channel_ratio": 0.5, "ignored_layers": ["stem.0", "blok.*"]}}),
        ["stages[0].prune.ignored_layers", "'blok.*' matches no layer"],
    ),
    (
        "taylor without train data",
        _recipe_with(
            {"prune": {"channel_ratio": 0.5, "importance": "taylor"}},
            data={"eval": tiny_recipe_dict()["data"]["eval"]},
        ),
        ["stages[0].prune", "data.train"],
    ),
    (
        "unknown importance",
        _recipe_with({"prune": {"channel_ratio": 0.5, "importance": "l3"}}),
        ["prune.importance", "'l2'"],
    ),
]


@pytest.mark.parametrize("description, content, fragments", BAD, ids=[c[0] for c in BAD])
def test_bad_prune_parameters_fail_validation(description, content, fragments, write_recipe):
    from optimize.errors import RecipeError
    from optimize.recipe.loader import load_recipe

    path = write_recipe(content)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} not in {error.value}"
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output


def test_good_prune_recipe_validates(write_recipe):
    path = write_recipe(
        _recipe_with({"train": {"epochs": 1}}, {"prune": {"target_macs": 0.5, "ignored_layers": ["block.*"]}})
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
