"""`precision: auto` end to end: the step writes its candidates, each target times them with FP32
in one session, ships one and says which and why (manifest, notes, engine)."""

from __future__ import annotations

import json

import pytest

import optimize
from tests.conftest import tiny_recipe_dict

pytestmark = pytest.mark.slow


def test_each_target_ships_the_fastest_candidate_within_the_budget(write_recipe, artifacts):
    stages = [
        {"train": {"epochs": 3, "lr": 0.02, "batch_size": 16}},
        {"export": {"opset": 17}},
        {"quantize": {"precision": "auto", "max_accuracy_drop": 0.5}},
    ]
    recipe = tiny_recipe_dict(stages=stages, tracking={"enabled": False})
    outcome = optimize.run(optimize.load_recipe(write_recipe(recipe)), artifacts=artifacts)
    (target,) = outcome.targets
    choice = target.choice
    # the tiny CNN has nothing ONNX Runtime leaves in float; its Gemm makes an int8-dynamic candidate
    assert set(choice["candidates"]) == {"int8", "int8-dynamic", "fp32"}
    fastest = min(choice["candidates"], key=lambda name: choice["candidates"][name]["latency_p50_ms"])
    if "kept, as no candidate" in choice["why"]:  # the fastest was not faster in every round
        fastest = "int8"
    assert choice["chosen"] == fastest and choice["candidates"][fastest]["chosen"]
    assert (target.engine.hash == target.baselines["fp32"].engine.hash) is (fastest == "fp32")
    assert any(note.startswith(f"precision auto shipped {fastest}") for note in target.notes)
    manifest = json.loads(outcome.manifest_path.read_text())
    assert manifest["targets"][0]["precision_choice"]["chosen"] == fastest
    step = manifest["steps"][-1]["info"]
    assert step["not_candidates"]["int8-partial"].startswith("ONNX Runtime runs every quantized layer")
    assert "int4" in step["not_candidates"]  # a CNN: its one Gemm is the output layer, kept in INT8
    assert set(step["candidates"]) == {"int8", "int8-dynamic"}

    recipe["stages"][-1]["quantize"]["max_accuracy_drop"] = 0.0  # no quantized candidate may lose anything
    stricter = optimize.run(optimize.load_recipe(write_recipe(recipe)), artifacts=artifacts)
    (target,) = stricter.targets
    drop = target.choice["candidates"]["int8"]["accuracy_drop_vs_fp32"]
    if drop > 0:
        assert target.choice["chosen"] == "fp32" and target.metrics["speedup_vs_fp32"] == 1.0
