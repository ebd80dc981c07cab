"""Bad recipes: each ends in exit code 2, one line naming file:line and field, what was wrong
and what is valid, and nothing written to the artifacts folder."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from optimize.cli import main
from tests.conftest import run_cli, tiny_recipe_dict


def _with(path: tuple, value):
    recipe = tiny_recipe_dict()
    node = recipe
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return recipe


CASES = [
    # (description, recipe dict or YAML text, expected fragments of the message)
    ("misspelt top-level key", {**tiny_recipe_dict(), "stagez": []}, ["stagez", "did you mean 'stages'"]),
    (
        "misspelt stage name",
        _with(("stages",), [{"trian": {"epochs": 1}}]),
        ["stages[0].trian", "did you mean 'train'", "valid stages"],
    ),
    (
        "misspelt stage parameter",
        _with(("stages",), [{"train": {"epoch": 1}}, "export"]),
        ["stages[0].train.epoch", "did you mean 'epochs'"],
    ),
    (
        "parameter out of range",
        _with(("stages",), [{"train": {"epochs": 0}}, "export"]),
        ["stages[0].train.epochs", "greater than 0", "got 0"],
    ),
    (
        "wrong parameter type",
        _with(("stages",), [{"train": {"lr": "fast"}}, "export"]),
        ["stages[0].train.lr", "valid number"],
    ),
    (
        "unknown device class",
        _with(("targets",), ["x86-cpu-onnxruntim"]),
        ["targets[0]", "did you mean 'x86-cpu-onnxruntime'"],
    ),
    (
        "unknown data source",
        _with(("data", "train"), {"source": "digitz"}),
        ["data.train", "did you mean 'digits'"],
    ),
    (
        "bad literal value",
        _with(("data", "eval", "split"), "tset"),
        ["data.eval.split", "'test'", "got 'tset'"],
    ),
    (
        "unknown model source",
        _with(("model", "source"), "torchvison:resnet18"),
        ["model.source", "did you mean 'torchvision'"],
    ),
    (
        "unknown torchvision architecture",
        _with(("model", "source"), "torchvision:resnet19"),
        ["model.source", "did you mean 'resnet18'"],
    ),
    (
        "torch stage after export",
        _with(("stages",), ["export", {"train": {"epochs": 1}}]),
        ["stages[1].train", "needs a torch model", "onnx"],
    ),
    ("targets without export", _with(("stages",), [{"train": {"epochs": 1}}]), ["targets", "add '- export'"]),
    (
        "stage without its data",
        {**tiny_recipe_dict(), "data": {"eval": {"source": "digits", "split": "test"}}},
        ["stages[0].train", "data.train"],
    ),
    (
        "missing required field",
        {k: v for k, v in tiny_recipe_dict().items() if k != "model"},
        ["model", "required field is missing"],
    ),
    ("missing weights file", _with(("model", "weights"), "nowhere.pt"), ["model.weights", "no such file"]),
    (
        "gate for a target not in targets",
        {**tiny_recipe_dict(), "gates": {"per_target": {"intel-cpu-openvino": {"max_size_mb": 1}}}},
        ["gates.per_target.intel-cpu-openvino", "not in targets"],
    ),
    ("bad recipe name", _with(("name",), "../escape"), ["name", "pattern"]),
    (
        "python model module missing",
        _with(("model", "source"), "python:no_such_module:build"),
        ["model.source", "no module 'no_such_module'"],
    ),
    ("duplicate YAML key", "name: a\nname: b\n", [":2:", "duplicate key 'name'"]),
    ("invalid YAML", "name: [unclosed\n", ["not valid YAML"]),
    ("not a mapping", "- just\n- a list\n", ["a recipe is a mapping"]),
    (
        "pickle without opt-in",
        _with(("model", "source"), "torch-pickle:model.pkl"),
        ["model.source", "trust_pickle"],
    ),
    (
        "training on unlabelled data",
        _with(("data", "train"), {"source": "python:my_data:build", "labeled": False}),
        ["stages[0].train", "computes a loss on class labels", "data.train ('python' data) has none"],
    ),
    (
        "distilling on unlabelled data",
        _with(
            ("stages",),
            [{"prune": {"channel_ratio": 0.5}}, {"distill": {"epochs": 1}}, "export"],
        )
        | {"data": {"train": {"source": "python:my_data:build", "labeled": False}}},
        ["stages[1].distill", "data.train ('python' data) has none"],
    ),
    (
        "accuracy gate on unlabelled eval data",
        _with(("data", "eval"), {"source": "python:my_data:build", "labeled": False})
        | {"gates": {"min_speedup": None, "per_target": {"x86-cpu-onnxruntime": {"min_accuracy": 0.9}}}},
        ["gates.per_target.x86-cpu-onnxruntime.min_accuracy", "which data.eval ('python' data) lacks"],
    ),
    (
        "accuracy gate without eval data",
        {**tiny_recipe_dict(targets=[], stages=[{"train": {"epochs": 1}}]), "gates": {"min_accuracy": 0.9}}
        | {"data": {"train": {"source": "digits", "split": "train"}}},
        ["gates.min_accuracy", "data.eval, which the recipe does not define"],
    ),
]


@pytest.mark.parametrize("description, content, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_exits_2_with_a_clear_line(description, content, fragments, write_recipe, artifacts):
    path = write_recipe(content)
    result = CliRunner().invoke(main, ["run", str(path), "--artifacts", str(artifacts), "--quiet"])
    assert result.exit_code == 2, result.output
    message = result.output
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message
    assert not artifacts.exists(), "an invalid recipe must not write anything"


def test_error_names_the_line_of_the_field(write_recipe):
    text = "name: tiny\nmodel:\n  source: torchvision:resnet18\n  input: {shape: [1, 3, 8, 8]}\nstages:\n  - train:\n      epochz: 3\n"
    path = write_recipe(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:7: stages[0].train.epochz: unknown key 'epochz' (did you mean 'epochs'?)" in result.output


def test_every_problem_is_reported_at_once(write_recipe):
    recipe = _with(("stages",), [{"train": {"epochs": 0, "lr": -1}}, "export"])
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    assert "stages[0].train.epochs" in result.output and "stages[0].train.lr" in result.output


def test_relative_paths_resolve_against_the_recipe_folder(write_recipe, tmp_path):
    import torch

    from tests.assets.tiny_models import tiny_cnn

    (tmp_path / "weights").mkdir()
    torch.save(tiny_cnn(width=8).state_dict(), tmp_path / "weights" / "tiny.pt")
    recipe = _with(("model", "weights"), "weights/tiny.pt")
    result = CliRunner().invoke(
        main, ["validate", str(write_recipe(recipe)), "--artifacts", str(tmp_path / "a")]
    )
    assert result.exit_code == 0, result.output


def test_real_process_exit_code_and_no_traceback(write_recipe, artifacts):
    path = write_recipe(_with(("stages",), [{"trian": {}}]))
    result = run_cli("run", str(path), "--artifacts", str(artifacts))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")
    assert not artifacts.exists()


def test_markup_and_control_characters_in_a_recipe_are_shown_verbatim(write_recipe):
    recipe = {**tiny_recipe_dict(), "[bold]x\x1ey": 1}
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    assert "unknown key '[bold]x\\x1ey'" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_a_problem_in_a_device_class_file_names_that_file_its_line_and_the_recipe_key(write_recipe):
    path = write_recipe(_with(("device_classes",), "classes.yaml"))
    (path.parent / "classes.yaml").write_text("- name: my-cpu\n  runtime: onnxruntime\n  batch: {min: 0}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"device_classes: {path.parent / 'classes.yaml'}:3: [0].batch.min:" in result.output
