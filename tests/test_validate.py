"""`validate` catches what it can know: each mistake that used to pass it and fail minutes into a
run now exits 2 at `validate` with one line naming the fix, and `run` stops on the same line before
any step. Checks that need the data or the model run in the remembered preflight, shared by both
commands and re-run when what they checked changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import optimize.api
from optimize.cli import main
from optimize.errors import RecipeError
from tests.conftest import tiny_recipe_dict


def _entries(artifacts: Path) -> list[str]:
    return [json.loads(p.read_text())["label"] for p in (artifacts / "store" / "entries").glob("*.json")]


def _refused(path: Path, artifacts: Path) -> str:
    """The one error line `validate` gives, after checking that `run` gives it too, having run no step."""
    checked = CliRunner().invoke(main, ["validate", str(path), "--artifacts", str(artifacts)])
    assert checked.exit_code == 2, checked.output
    lines = [line for line in checked.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), checked.output
    ran = CliRunner().invoke(main, ["run", str(path), "--artifacts", str(artifacts), "--quiet"])
    assert ran.exit_code == 2 and ran.output == checked.output, ran.output
    assert not (artifacts / "tiny").exists(), "no run folder"
    assert not [label for label in _entries(artifacts) if label.startswith("stage ")], "no step"
    return lines[0]


def _export_fixed_batch(folder: Path) -> None:
    """tiny_cnn exported the way a user's script often does it: no dynamic_axes, so batch 1 only."""
    import torch

    from tests.assets.tiny_models import tiny_cnn

    torch.onnx.export(
        tiny_cnn(width=8).eval(),
        (torch.randn(1, 3, 8, 8),),
        str(folder / "fixed.onnx"),
        input_names=["images"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
    )


def _onnx_recipe(batch_size: int, targets: list[str]) -> dict:
    recipe = tiny_recipe_dict(stages=[], targets=targets)
    recipe["model"] = {"source": "onnx:fixed.onnx"}
    recipe["evaluation"]["batch_size"] = batch_size
    return recipe


def test_an_onnx_source_with_a_fixed_batch_is_refused_where_bigger_batches_are_fed(
    write_recipe, artifacts, tmp_path
):
    _export_fixed_batch(tmp_path)
    line = _refused(write_recipe(_onnx_recipe(2, [])), artifacts)
    assert line.endswith(
        "model.source: fixed.onnx has a fixed batch of 1 (input 'images'), but evaluation.batch_size is 2; "
        "re-export it with a dynamic batch axis, or set evaluation.batch_size: 1"
    )


def test_a_fixed_batch_names_each_target_that_times_bigger_batches(write_recipe, tmp_path):
    _export_fixed_batch(tmp_path)
    with pytest.raises(RecipeError) as raised:
        optimize.api.load_recipe(write_recipe(_onnx_recipe(1, ["x86-cpu-onnxruntime"])))
    assert str(raised.value).endswith(
        "but target 'x86-cpu-onnxruntime' times batches of 32; re-export it with a dynamic batch axis, "
        "or redefine 'x86-cpu-onnxruntime' under device_classes with batch: {min: 1, opt: 1, max: 1}"
    )


def test_a_fixed_batch_of_1_passes_where_only_single_samples_are_fed(write_recipe, artifacts, tmp_path):
    _export_fixed_batch(tmp_path)
    path = write_recipe(_onnx_recipe(1, []))
    result = CliRunner().invoke(main, ["validate", str(path), "--artifacts", str(artifacts)])
    assert result.exit_code == 0, result.output
    assert "data and model check" in _entries(artifacts)  # the preflight fed it a batch of 1


def test_a_misspelt_model_factory_gets_did_you_mean(write_recipe, artifacts):
    recipe = tiny_recipe_dict()
    recipe["model"]["source"] = "python:tiny_models:tiny_cn"
    line = _refused(write_recipe(recipe), artifacts)
    assert line.endswith(
        "model.source: module 'tiny_models' has no function 'tiny_cn' (did you mean 'tiny_cnn'?)"
    )


def test_a_misspelt_data_function_gets_did_you_mean(write_recipe, artifacts, tmp_path):
    (tmp_path / "typo_data.py").write_text(
        "import torch\n"
        "def load_digits_like(n=40):\n"
        "    return torch.utils.data.TensorDataset(torch.randn(n, 3, 8, 8), torch.arange(n) % 10)\n"
    )
    recipe = tiny_recipe_dict()
    recipe["data"]["eval"] = {"source": "python:typo_data:load_digit_like"}
    line = _refused(write_recipe(recipe), artifacts)
    assert line.endswith(
        "data.eval: cannot load 'python' data: module 'typo_data' has no function 'load_digit_like' "
        "(did you mean 'load_digits_like'?)"
    )


def test_training_on_unlabelled_data_is_refused(write_recipe, artifacts, tmp_path):
    np.savez(tmp_path / "embeddings.npz", x=np.zeros((40, 3, 8, 8), np.float32))
    recipe = tiny_recipe_dict()
    recipe["data"]["train"] = {"source": "npz", "path": "embeddings.npz", "y_key": None}
    line = _refused(write_recipe(recipe), artifacts)
    assert line.endswith(
        "stages[0].train: 'train' computes a loss on class labels, but data.train ('npz' data) has none; "
        "use labelled data.train (npz: y_key, python: labeled: true) or remove the step"
    )


def test_an_accuracy_gate_on_an_embedding_model_is_refused(write_recipe, artifacts):
    recipe = tiny_recipe_dict(stages=["export", {"quantize": {"precision": "int8"}}])
    recipe["model"]["task"] = "embedding"
    recipe["gates"] = {"min_speedup": None, "min_accuracy": 0.5, "max_accuracy_drop": 0.1}
    del recipe["data"]["train"]
    line = _refused(write_recipe(recipe), artifacts)
    assert line.endswith(
        "gates.min_accuracy: accuracy is top-1 on class labels, which a model with task: embedding lacks; "
        "gate on min_agreement or max_accuracy_drop (measured against FP32 outputs) instead"
    )


def _float_labels(folder: Path, labels: np.ndarray) -> dict:
    np.savez(folder / "regression.npz", x=np.zeros((len(labels), 3, 8, 8), np.float32), y=labels)
    recipe = tiny_recipe_dict()
    recipe["data"]["train"] = {"source": "npz", "path": "regression.npz"}
    return recipe


FIX = (
    "a classifier needs integer class indices: use task: embedding for outputs compared to FP32, "
    "or cast the labels to integers explicitly"
)


@pytest.mark.parametrize(
    "labels, shown",
    [
        (np.array([2.0, 0.37, 1.5] * 10, np.float32), "0.37"),  # regression targets
        (np.arange(30, dtype=np.float64) % 10, "0.0"),  # class indices stored as floats
    ],
    ids=["fractional", "whole numbers"],
)
def test_float_labels_are_refused_for_a_classifier(labels, shown, write_recipe, artifacts, tmp_path):
    line = _refused(write_recipe(_float_labels(tmp_path, labels)), artifacts)
    assert line.endswith(f"data.train: labels are float (e.g. {shown}); {FIX}")


def test_float_labels_from_a_python_dataset_are_refused(write_recipe, artifacts, tmp_path):
    (tmp_path / "scores_data.py").write_text(
        "import torch\n"
        "class Scores(torch.utils.data.Dataset):\n"
        "    def __len__(self):\n"
        "        return 20\n"
        "    def __getitem__(self, index):\n"
        "        return torch.zeros(3, 8, 8), index / 8\n"
        "def load():\n"
        "    return Scores()\n"
    )
    recipe = tiny_recipe_dict(stages=["export"])
    recipe["data"] = {"eval": {"source": "python:scores_data:load"}}
    assert _refused(write_recipe(recipe), artifacts).endswith(
        f"data.eval: labels are float (e.g. 0.125); {FIX}"
    )


def test_float_labels_stay_usable_for_an_embedding_model(write_recipe, artifacts, tmp_path):
    recipe = _float_labels(tmp_path, np.linspace(0, 1, 30, dtype=np.float32))
    recipe["model"]["task"] = "embedding"
    recipe["data"]["eval"] = recipe["data"].pop("train")
    recipe["stages"] = ["export"]
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe)), "--artifacts", str(artifacts)])
    assert result.exit_code == 0, result.output


def test_the_preflight_is_remembered_and_rerun_when_the_data_changes(write_recipe, artifacts, tmp_path):
    path = write_recipe(_float_labels(tmp_path, np.arange(30) % 10))
    loaded = optimize.api.validate(path, artifacts=artifacts)
    assert _entries(artifacts).count("data and model check") == 1
    optimize.api.validate(loaded, artifacts=artifacts)  # nothing changed: the same entry
    assert _entries(artifacts).count("data and model check") == 1
    _float_labels(tmp_path, (np.arange(30) % 10).astype(np.float32))
    with pytest.raises(RecipeError, match="data.train: labels are float"):
        optimize.api.validate(path, artifacts=artifacts)
