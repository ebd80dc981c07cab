"""What a target's model bought against its baselines (pure): speedups, size ratios, drops, the
reasons a comparison is missing, and the one-line headline."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from optimize.comparison import baseline_models, compare, headline, speedup_spread

FINAL = {"latency_p50_ms": 0.5, "size_mb": 2.0, "accuracy": 0.97, "agreement_top1": 0.99}
ORIGINAL = {"latency_p50_ms": 4.0, "size_mb": 44.0, "accuracy": 0.98}


def test_speedup_size_ratio_and_accuracy_drop_against_a_baseline():
    metrics, missing = compare(FINAL, ORIGINAL, "original")
    assert metrics == {
        "speedup_vs_original": 8.0,
        "size_ratio_vs_original": 22.0,
        "accuracy_drop_vs_original": pytest.approx(0.01),
    }
    assert missing == {}


def test_without_labels_the_drop_is_one_minus_agreement_with_that_baselines_outputs():
    embedding = {
        "latency_p50_ms": 1.0,
        "size_mb": 1.0,
        "agreement_cosine": 0.99,
        "agreement_cosine_vs_original": 0.97,
    }
    assert compare(embedding, {"latency_p50_ms": 2.0, "size_mb": 4.0}, "fp32")[0][
        "accuracy_drop_vs_fp32"
    ] == pytest.approx(0.01)
    assert compare(embedding, {"latency_p50_ms": 2.0, "size_mb": 4.0}, "original")[0][
        "accuracy_drop_vs_original"
    ] == pytest.approx(0.03)


def test_a_number_that_cannot_be_computed_is_missing_with_a_reason_never_defaulted():
    metrics, missing = compare({"size_mb": 1.0}, {"size_mb": 2.0}, "fp32")
    assert metrics == {"size_ratio_vs_fp32": 2.0}
    assert set(missing) == {"speedup_vs_fp32", "accuracy_drop_vs_fp32"}


def _model(digest):
    return SimpleNamespace(hash=digest)


def test_baselines_are_those_that_differ_from_the_final_model_and_that_the_class_runs():
    final, reference, original = _model("q"), _model("f"), _model("o")
    models, reasons = baseline_models(final, reference, original, True, "x86")
    assert {name: m.hash for name, m in models.items()} == {"original": "o", "fp32": "f"} and reasons == {}

    models, reasons = baseline_models(reference, reference, None, True, "x86")  # FP32-only, no compression
    assert models == {}
    assert "no prune, distill or quantize step" in reasons["speedup_vs_original"]
    assert "the final model is the FP32 baseline" in reasons["accuracy_drop_vs_fp32"]

    models, reasons = baseline_models(final, reference, original, False, "dla-int8")
    assert models == {} and "dla-int8 runs no FP32 models" in reasons["size_ratio_vs_original"]


def test_speedup_spread_over_rounds():
    assert speedup_spread([4.0, 4.0, 4.4], [1.0, 1.0, 1.0]) == pytest.approx(0.1)
    assert speedup_spread([4.0], [1.0]) is None


def test_headline_says_what_the_recipe_bought_or_why_it_cannot():
    target = {
        "name": "x86-cpu-onnxruntime",
        "status": "ok",
        "metrics": {**FINAL, **compare(FINAL, ORIGINAL, "original")[0]},
        "baselines": {"original": {"metrics": ORIGINAL}},
    }
    line = headline(target)
    assert line == (
        "x86-cpu-onnxruntime: original → final: 44 MB → 2 MB (22.0× smaller), p50 4 → 0.5 ms (8.00× faster), "
        "accuracy 98.00 % → 97.00 % (-1.00 pt)"
    )
    slower = dict(target, metrics={**target["metrics"], "speedup_vs_original": 0.8})
    assert "(1.25× slower)" in headline(slower)
    fp32_only = {
        "name": "x",
        "status": "ok",
        "metrics": FINAL,
        "unmeasured": {"speedup_vs_original": "no compression"},
    }
    assert headline(fp32_only) == "x: no comparison with the original model: no compression"
    assert headline({"name": "jetson", "status": "skipped", "reason": "no GPU"}) == "jetson: skipped (no GPU)"
