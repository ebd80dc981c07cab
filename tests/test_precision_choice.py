"""`precision: auto`'s decision on one target (pure): the fastest candidate within the accuracy
budget, FP32 included, and a reason that names the others."""

from __future__ import annotations

import pytest

from optimize.precision_choice import choose

FP32 = {"latency_p50_ms": 1.0}


def test_the_fastest_candidate_within_the_budget_ships():
    measured = {
        "int8": {"latency_p50_ms": 0.5, "accuracy_drop_vs_fp32": 0.004},
        "int8-partial": {"latency_p50_ms": 0.4, "accuracy_drop_vs_fp32": 0.02},  # faster, over budget
        "fp32": FP32,
    }
    chosen, why, records = choose(measured, budget=0.01)
    assert chosen == "int8"
    assert why == (
        "int8: the fastest within the 1.00 pt accuracy budget (2.00× FP32); "
        "int8-partial over budget (+2.00 pt), fp32 1.00×"
    )
    assert records["int8"]["chosen"] and not records["int8-partial"]["within_budget"]
    assert records["int8-partial"]["speedup_vs_fp32"] == pytest.approx(2.5)


def test_fp32_ships_when_every_quantized_candidate_is_slower_or_over_budget():
    measured = {
        "int8": {"latency_p50_ms": 1.2, "accuracy_drop_vs_fp32": 0.0},
        "int4": {"latency_p50_ms": 0.8, "accuracy_drop_vs_fp32": None},  # not measured: not in budget
        "fp32": FP32,
    }
    chosen, why, records = choose(measured, budget=0.01)
    assert chosen == "fp32" and records["fp32"]["chosen"]
    assert why.startswith("fp32: no quantized candidate is both faster than FP32 and within the 1.00 pt")
    assert "int8 0.83×" in why and "int4 over budget (unmeasured)" in why


def test_the_step_model_is_displaced_only_by_a_candidate_faster_in_every_round():
    """Noise must not flip what ships between a run and its rebuild: a challenger's lower p50 with
    one round slower than INT8 keeps INT8; faster in every round, the challenger ships."""
    int8 = {"latency_p50_ms": 0.5, "accuracy_drop_vs_fp32": 0.0, "round_p50_ms": [0.5, 0.5, 0.5]}
    noisy = {"latency_p50_ms": 0.48, "accuracy_drop_vs_fp32": 0.0, "round_p50_ms": [0.45, 0.48, 0.55]}
    chosen, why, records = choose({"int8": int8, "int8-partial": noisy, "fp32": FP32}, budget=0.01)
    assert chosen == "int8" and records["int8"]["chosen"]
    assert why.startswith(
        "int8: kept, as no candidate within the 1.00 pt accuracy budget was faster in every round"
    )
    clear = {**noisy, "round_p50_ms": [0.45, 0.48, 0.49]}
    assert choose({"int8": int8, "int8-partial": clear, "fp32": FP32}, budget=0.01)[0] == "int8-partial"


def test_a_step_model_slower_than_fp32_is_never_kept_on_noise():
    """INT8 at 0.95× FP32 by p50 fails the default min_speedup gate: FP32 ships even though one
    round had INT8 ahead."""
    int8 = {"latency_p50_ms": 1.0, "accuracy_drop_vs_fp32": 0.0, "round_p50_ms": [1.0, 1.0, 1.0]}
    fp32 = {"latency_p50_ms": 0.95, "round_p50_ms": [0.9, 0.95, 1.1]}
    chosen, why, _ = choose({"int8": int8, "fp32": fp32}, budget=0.01)
    assert chosen == "fp32" and why.startswith("fp32: no quantized candidate is both faster")
