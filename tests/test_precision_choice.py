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
