"""Quantization methods as configs with registered handlers: every registered method round-trips
through the recipe schema, an option of another method is a one-line error naming the option and
its method, the INT8 activation scheme follows what the targets' runtimes declare (not their
names), and an edit to a method's module changes the quantize step's code fingerprint."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from optimize.cli import main
from optimize.code_fingerprint import local_code_fingerprint
from optimize.errors import RecipeError
from optimize.quantization.base import (
    QuantizeOptions,
    Quantizer,
    choose,
    describe_methods,
    quantizer_for,
    validate_params,
)
from optimize.quantization.int8 import activation_scheme
from optimize.recipe.field_docs import params_variants
from optimize.recipe.loader import load_recipe
from optimize.recipe.schema import Recipe
from optimize.registries import QUANTIZERS, RUNTIMES
from optimize.runtimes.base import Runtime
from optimize.stages.base import StageParams
from optimize.stages.quantize import QuantizeStage
from tests.conftest import REPO, recipe_stub, tiny_recipe_dict

# Options that choose each registered method, with one option of its own; a new method adds a line.
EXAMPLES = {
    "nncf-int8": {"subset_size": 32, "bias_correction": "full"},
    "nncf-int8-accuracy-control": {"max_accuracy_drop": 0.02, "max_fp32_layers": 3},
    "onnxruntime-int8": {"backend": "onnxruntime", "per_channel": False},
    "dynamic-int8": {"backend": "dynamic", "int8_format": "nbits"},
    "int4": {"precision": "int4", "group_size": 64, "awq": True, "accuracy_level": 0},
    "fp16": {"precision": "fp16", "ignored_types": ["Softmax"]},
    "auto": {"precision": "auto", "candidates": ["int4"], "max_accuracy_drop": 0.02},
}
ROLES = {
    "nncf-int8": ("calibration",),
    "nncf-int8-accuracy-control": ("calibration", "eval"),
    "onnxruntime-int8": ("calibration",),
    "dynamic-int8": (),  # activations are quantized at run time
    "int4": ("calibration",),  # awq reads calibration data
    "fp16": (),
    "auto": ("calibration",),
}


def _recipe(quantize: dict) -> dict:
    stages = [{"train": {"epochs": 1}}, "export", {"quantize": quantize}]
    return tiny_recipe_dict(stages=stages, targets=[])  # no target refuses a precision


def test_every_registered_method_has_an_example_here():
    assert sorted(EXAMPLES) == sorted(QUANTIZERS.names())


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_method_round_trips_through_the_recipe_schema(name, write_recipe):
    path = write_recipe(_recipe(EXAMPLES[name]))
    loaded = load_recipe(path)
    step = loaded.recipe.stages[-1]
    handler = QUANTIZERS.get(name)
    assert isinstance(step, handler.Config) and step.stage == "quantize"
    assert type(quantizer_for(step)) is handler
    assert step.model_dump(include=set(EXAMPLES[name])) == EXAMPLES[name]
    assert QuantizeStage.roles_read(step) == ROLES[name]
    assert QuantizeStage.precision_after(step, "fp32") == handler().precision(step)
    # as written (the manifest's 'given') and resolved (every default filled in), it reads back the same
    for dump in (
        loaded.recipe.model_dump(mode="json", exclude_unset=True),
        loaded.recipe.model_dump(mode="json"),
    ):
        again = Recipe.model_validate(json.loads(json.dumps(dump)), context={"base_dir": path.parent})
        assert again == loaded.recipe and type(again.stages[-1]) is type(step)
    # the step's cache key hashes this dump: the selector keys and every option are in it
    params = step.model_dump(mode="json", exclude={"id", "stage"})
    assert set(params) == set(handler.Config.model_fields) - {"id"}
    assert params["precision"] == step.precision


def test_the_defaults_choose_nncf_int8_and_a_null_budget_is_no_budget():
    assert type(quantizer_for(validate_params())).name == "nncf-int8"
    assert type(quantizer_for(validate_params(max_accuracy_drop=None))).name == "nncf-int8"
    assert choose({"precision": "int8", "backend": "nncf", "max_accuracy_drop": 0.1}).name == (
        "nncf-int8-accuracy-control"
    )


WRONG_METHOD = [
    (
        {"per_channel": False},
        "per_channel",
        "'per_channel' applies to precision int8 with backend onnxruntime only; "
        "this step is precision int8 with backend nncf",
    ),
    (
        {"precision": "int4", "activations": "symmetric"},
        "activations",
        "'activations' applies to precision int8 with backend nncf or precision int8 with backend onnxruntime "
        "only; this step is precision int4",
    ),
    (
        {"precision": "fp16", "subset_size": 10},
        "subset_size",
        "'subset_size' applies to precision int8 with backend nncf or precision int8 with backend onnxruntime or "
        "precision int4 or precision auto only; this step is precision fp16",
    ),
    (
        {"backend": "onnxruntime", "model_type": "transformer"},
        "model_type",
        "'model_type' applies to precision int8 with backend nncf only; "
        "this step is precision int8 with backend onnxruntime",
    ),
    (
        {"precision": "int8", "mode": "int4_sym"},
        "mode",
        "'mode' applies to precision int4 only; this step is precision int8 with backend nncf",
    ),
    ({"max_fp32_layers": 2}, "max_fp32_layers", "'max_fp32_layers' needs max_accuracy_drop"),
    (
        {"precision": "int2"},
        "precision",
        "Input should be 'int8', 'int4', 'fp16' or 'auto' (got 'int2') (did you mean 'int8'?)",
    ),
    (
        {"backend": "onnxrt"},
        "backend",
        "Input should be 'nncf', 'onnxruntime' or 'dynamic' (got 'onnxrt') (did you mean 'onnxruntime'?)",
    ),
]


@pytest.mark.parametrize("quantize, option, message", WRONG_METHOD, ids=[c[1] for c in WRONG_METHOD])
def test_an_option_of_another_method_is_a_one_line_schema_error(quantize, option, message, write_recipe):
    path = write_recipe(_recipe(quantize))
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    text = str(error.value)
    assert "\n" not in text
    assert text.endswith(f": stages[2].quantize.{option}: {message}"), text
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_an_unknown_key_lists_the_keys_of_the_chosen_method(write_recipe):
    with pytest.raises(
        RecipeError, match=r"quantize\.grup_size: unknown key 'grup_size' \(did you mean 'group_size'"
    ):
        load_recipe(write_recipe(_recipe({"precision": "int4", "grup_size": 64})))


def test_methods_are_described_by_the_selector_values_that_pick_them_out():
    get = QUANTIZERS.get
    int8 = [get("nncf-int8"), get("nncf-int8-accuracy-control"), get("onnxruntime-int8"), get("dynamic-int8")]
    assert describe_methods(int8) == "precision int8"
    assert describe_methods(int8[:2]) == "precision int8 with backend nncf"
    assert (
        describe_methods(int8[:3])
        == "precision int8 with backend nncf or precision int8 with backend onnxruntime"
    )
    assert describe_methods([*int8, get("int4")]) == "precision int8 or precision int4"
    assert describe_methods([get("fp16")]) == "precision fp16"


def test_the_id_field_is_the_one_every_stage_step_has():
    ours, theirs = QuantizeOptions.model_fields["id"], StageParams.model_fields["id"]
    assert (ours.annotation, ours.default, ours.description) == (
        theirs.annotation,
        theirs.default,
        theirs.description,
    )
    assert ours.metadata == theirs.metadata


def test_the_stage_params_document_one_table_per_method():
    variants = params_variants(QuantizeStage.Params)
    assert [tag for tag, _ in variants] == QUANTIZERS.names()
    assert all(issubclass(model, QuantizeOptions) for _, model in variants)
    reference = (REPO / "docs" / "recipe-reference.md").read_text()
    assert all(f"#### `quantize` method `{name}`" in reference for name in QUANTIZERS.names())


def test_every_handler_is_a_quantizer_for_its_own_config():
    configs = [handler.Config for _, handler in QUANTIZERS]
    assert len(set(configs)) == len(configs)
    for name, handler in QUANTIZERS:
        assert issubclass(handler, Quantizer) and handler.name == name
        assert set(handler.libraries) <= set(QuantizeStage.libraries)


# -- the activation scheme is a runtime capability -------------------------------------------


class _StrictGpuRuntime(Runtime):
    """Not registered: stands for a runtime a new file would add."""

    name = "strict-gpu"
    needs_symmetric_int8_activations = True


@pytest.fixture
def with_strict_runtime(monkeypatch):
    real = RUNTIMES.get
    monkeypatch.setattr(
        RUNTIMES, "get", lambda name: _StrictGpuRuntime if name == "strict-gpu" else real(name)
    )


def test_a_runtime_that_declares_symmetric_int8_gets_symmetric_activations(with_strict_runtime):
    recipe = recipe_stub(["cpu", "gpu"], {"cpu": "onnxruntime", "gpu": "strict-gpu"})
    scheme, why = activation_scheme(validate_params(), recipe)
    assert scheme == "symmetric" and why == "gpu runs strict-gpu, which takes only signed symmetric INT8"
    assert quantizer_for(validate_params()).cache_extra(validate_params(), recipe) == {
        "activation_scheme": "symmetric"
    }
    asymmetric = validate_params(backend="onnxruntime", activations="asymmetric")
    ((location, message),) = QuantizeStage.check(asymmetric, recipe, 2, REPO)
    assert location == ("stages", 2, "quantize", "activations")
    assert message == (
        "gpu runs strict-gpu, which takes only symmetric INT8 activations; use activations: symmetric (or auto)"
    )


def test_the_scheme_reads_the_capability_not_the_runtime_name(monkeypatch):
    recipe = recipe_stub(["orin"], {"orin": "tensorrt"})
    assert activation_scheme(validate_params(), recipe)[0] == "symmetric"
    monkeypatch.setattr(RUNTIMES.get("tensorrt"), "needs_symmetric_int8_activations", False)
    assert activation_scheme(validate_params(), recipe) == (
        "cpu",
        "every target runs on a CPU runtime (tensorrt)",
    )
    assert QuantizeStage.check(validate_params(activations="asymmetric"), recipe, 0, REPO) == []


def test_methods_without_int8_activations_take_no_scheme_from_the_targets():
    recipe = recipe_stub(["orin"], {"orin": "tensorrt"})
    for options in ({"precision": "int4"}, {"precision": "fp16"}):
        params = validate_params(options)
        # INT4's output depends on the targets only through the layout of its INT8 layers
        assert "activation_scheme" not in quantizer_for(params).cache_extra(params, recipe)
        assert QuantizeStage.check(params, recipe, 0, REPO) == []


# -- code fingerprint ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["ort_int8", "nncf_int8_accuracy", "base"])
def test_an_edit_to_a_quantization_module_changes_the_quantize_steps_code(module, tmp_path):
    """The pipeline keys a step on the code closure of its stage's module."""
    shutil.copytree(REPO / "optimize", tmp_path / "optimize", ignore=shutil.ignore_patterns("__pycache__"))
    before = local_code_fingerprint("optimize.stages.quantize", [tmp_path])
    assert before is not None and f"optimize.quantization.{module}" in before
    path = tmp_path / "optimize" / "quantization" / f"{module}.py"
    path.write_text(path.read_text() + "\nEDITED_FOR_TEST = 1\n")
    after = local_code_fingerprint("optimize.stages.quantize", [tmp_path])
    assert after != before
    assert {k for k in after if after[k] != before[k]} == {f"optimize.quantization.{module}"}
    assert not {"optimize.stages.prune", "optimize.stages.distill", "optimize.cli"} & set(after)
