"""Gate decisions (pure), the JUnit file read back by a standard JUnit parser, the summary."""

from __future__ import annotations

import pytest

from optimize.gates import GATE_METRICS, GateResult, decide, gates_json, junit_xml, summary_markdown
from optimize.recipe.gate_limits import GateLimits, Gates, Limit

TARGET = {
    "name": "x86-cpu-onnxruntime",
    "status": "ok",
    "reason": "",
    "metrics": {
        "size_mb": 2.0,
        "accuracy": 0.97,
        "accuracy_drop_vs_fp32": 0.004,
        "accuracy_drop_vs_original": 0.012,
        "agreement_top1": 0.99,
        "latency_p50_ms": 1.5,
        "latency_p90_ms": 2.0,
        "speedup_vs_fp32": 2.5,
        "speedup_vs_original": 8.0,
        "size_ratio_vs_original": 30.0,
        "peak_memory_mb": 50.0,
    },
    "unmeasured": {},
}


def test_gate_metrics_are_read_from_the_gate_limit_fields():
    """One list: each GateLimits field declares its metric and direction; GATE_METRICS follows."""
    assert list(GATE_METRICS) == list(GateLimits.model_fields)
    for name, info in GateLimits.model_fields.items():
        (limit,) = [item for item in info.metadata if isinstance(item, Limit)]
        assert GATE_METRICS[name] == (limit.metric, limit.direction)
        assert name.startswith(limit.direction + "_")
    assert GATE_METRICS["max_accuracy_drop"] == ("accuracy_drop_vs_fp32", "max")


def test_global_limits_apply_to_model_and_targets_and_per_target_overrides():
    gates = Gates(
        max_size_mb=4, min_accuracy=0.9, per_target={"x86-cpu-onnxruntime": {"max_latency_p90_ms": 1.0}}
    )
    results = decide(gates, [TARGET], {"size_mb": 1.9, "accuracy": 0.98})
    by_key = {(r.target, r.gate): r for r in results}
    assert by_key[("model", "max_size_mb")].status == "passed"
    assert by_key[("x86-cpu-onnxruntime", "min_accuracy")].status == "passed"
    failed = by_key[("x86-cpu-onnxruntime", "max_latency_p90_ms")]
    assert failed.status == "failed" and failed.measured == 2.0 and "not ≤ 1" in failed.detail


@pytest.mark.parametrize(
    "gate, limit, passes",
    [
        ("max_size_mb", 2.0, True),
        ("max_size_mb", 1.99, False),
        ("min_accuracy", 0.97, True),
        ("min_accuracy", 0.971, False),
        ("max_accuracy_drop", 0.004, True),
        ("max_accuracy_drop", 0.003, False),
        ("min_agreement", 0.99, True),
        ("min_speedup", 3.0, False),
        ("max_peak_memory_mb", 49.0, False),
        ("max_latency_p50_ms", 1.5, True),
        ("max_accuracy_drop_vs_original", 0.012, True),
        ("max_accuracy_drop_vs_original", 0.01, False),
        ("min_speedup_vs_original", 8.0, True),
        ("min_speedup_vs_original", 8.5, False),
        ("min_size_ratio_vs_original", 30.0, True),
        ("min_size_ratio_vs_original", 31.0, False),
    ],
)
def test_each_gate_direction(gate, limit, passes):
    (result,) = [
        r for r in decide(Gates(**{gate: limit}), [TARGET], {}) if r.target != "model" and r.gate == gate
    ]
    assert result.passed is passes


def test_a_quantized_engine_slower_than_fp32_fails_by_default():
    slower = {**TARGET, "metrics": {**TARGET["metrics"], "speedup_vs_fp32": 0.8}}
    (result,) = decide(Gates(), [slower], {})
    assert (result.gate, result.limit, result.status) == ("min_speedup", 1.0, "failed")
    assert result.detail == "speedup_vs_fp32 0.8 not ≥ 1 (default)"
    (faster,) = decide(Gates(), [TARGET], {})
    assert faster.status == "passed"


def test_the_default_speedup_gate_is_overridden_or_turned_off_globally_or_per_target():
    slower = {**TARGET, "metrics": {**TARGET["metrics"], "speedup_vs_fp32": 0.8}}
    (lower,) = decide(Gates(min_speedup=0.7), [slower], {})
    assert lower.status == "passed" and "(default)" not in lower.detail
    assert decide(Gates(min_speedup=None), [slower], {}) == []
    assert decide(Gates(per_target={slower["name"]: {"min_speedup": None}}), [slower], {}) == []
    (own,) = decide(Gates(min_speedup=0.7, per_target={slower["name"]: {"min_speedup": 0.9}}), [slower], {})
    assert own.status == "failed"


def test_the_default_gate_holds_only_where_there_is_an_fp32_baseline():
    """Without a quantize step (or on a class that runs no FP32) there is nothing to be slower than."""
    target = {
        **TARGET,
        "metrics": {"latency_p50_ms": 1.0},
        "unmeasured": {"speedup_vs_fp32": "no FP32 model"},
    }
    assert decide(Gates(), [target], {}) == []


def test_unmeasured_metric_fails_rather_than_passing_silently():
    target = {**TARGET, "metrics": {"latency_p50_ms": 1.0}}
    model, result = decide(Gates(min_accuracy=0.5), [target], {})
    assert model.target == "model" and model.status == "failed"
    assert result.status == "failed" and "not measured" in result.detail


def test_a_comparison_that_could_not_be_made_fails_and_says_why():
    """Nothing is filled in for a missing baseline: no drop of 0, no speedup of 1."""
    reason = "the final model is the original model (the recipe has no prune, distill or quantize step)"
    target = {
        **TARGET,
        "metrics": {"accuracy": 0.9, "latency_p50_ms": 1.0},
        "unmeasured": {"speedup_vs_original": reason, "accuracy_drop_vs_fp32": "no FP32 baseline"},
    }
    results = decide(Gates(min_speedup_vs_original=1.5, max_accuracy_drop=0.0, min_speedup=1.0), [target], {})
    assert [r.status for r in results] == ["failed"] * 3
    by_gate = {r.gate: r.detail for r in results}
    assert reason in by_gate["min_speedup_vs_original"]
    assert "no FP32 baseline" in by_gate["max_accuracy_drop"]
    assert by_gate["min_speedup"] == "speedup_vs_fp32 was not measured"


def test_skipped_target_skips_its_gates_and_failed_target_fails_them():
    skipped = {"name": "jetson-orin-tensorrt", "status": "skipped", "reason": "no GPU", "metrics": {}}
    failed = {"name": "t4-tensorrt", "status": "failed", "reason": "build failed", "metrics": {}}
    results = decide(Gates(max_latency_p50_ms=5), [skipped, failed], {})
    assert [r.status for r in results] == ["skipped", "failed"]


def test_junit_file_parses_with_a_standard_parser(tmp_path):
    from junitparser import Failure, JUnitXml, Skipped

    results = [
        GateResult("max_size_mb", "model", 4.0, 2.0, "passed", "size_mb 2 ≤ 4"),
        GateResult(
            "max_latency_p90_ms", "x86-cpu-onnxruntime", 1.0, 2.0, "failed", "latency_p90_ms 2 not ≤ 1"
        ),
        GateResult(
            "max_latency_p50_ms", "jetson-orin-tensorrt", 5.0, None, "skipped", "target skipped: no GPU"
        ),
    ]
    path = tmp_path / "junit.xml"
    path.write_text(junit_xml(results, "optimize.demo"))
    suite = next(iter(JUnitXml.fromfile(str(path))))
    assert (suite.tests, suite.failures, suite.skipped) == (3, 1, 1)
    cases = {case.name: case for case in suite}
    failure = cases["max_latency_p90_ms"].result[0]
    assert isinstance(failure, Failure) and "not ≤ 1" in failure.message
    assert isinstance(cases["max_latency_p50_ms"].result[0], Skipped)
    assert cases["max_size_mb"].is_passed
    assert gates_json(results)["failed"] == 1 and not gates_json(results)["passed"]


def test_summary_has_verdict_headline_tables_and_links():
    original = {"metrics": {"size_mb": 44.7, "latency_p50_ms": 1.09, "accuracy": 0.975}}
    metrics = {"size_mb": 2.0, "latency_p50_ms": 0.136, "accuracy": 0.97}
    metrics.update(speedup_vs_original=1.09 / 0.136, size_ratio_vs_original=44.7 / 2.0)
    target = {**TARGET, "metrics": metrics, "baselines": {"original": original}}
    manifest = {
        "recipe": {"name": "demo"},
        "run_id": "r1",
        "host": {"cpu": "cpu"},
        "steps": [],
        "targets": [target],
    }
    results = [GateResult("max_size_mb", "model", 4.0, 11.0, "failed", "size_mb 11 not ≤ 4")]
    text = summary_markdown(manifest, results, {"run": "http://127.0.0.1:5000/#/experiments/1/runs/abc"})
    assert "❌ gates failed" in text and "| max_size_mb | model | 4 | 11 |" in text
    headline = next(line for line in text.splitlines() if line.startswith("- x86-cpu-onnxruntime"))
    assert "44.7 MB → 2 MB (22.4× smaller)" in headline and "p50 1.09 → 0.136 ms (8.01× faster)" in headline
    assert "97.50 % → 97.00 % (-0.50 pt)" in headline
    assert text.index("Original → final") < text.index("| gate |")
    assert "[run](http://127.0.0.1:5000/#/experiments/1/runs/abc)" in text
    # The target table is the terminal's and the report's (optimize.columns): accuracy in percent.
    row = next(line for line in text.splitlines() if line.startswith("| x86-cpu-onnxruntime |"))
    assert "| ✅ ok | — | 97.00% | — | — | 0.136 |" in row and "| 2.00 |" in row
