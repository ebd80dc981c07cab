"""`precision: auto` on one target: which of the candidates (and FP32) to ship. Pure: the numbers
of one evaluation session in, the choice and why out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FP32 = "fp32"
STEP_MODEL = "int8"  # the step's own model: it ships unless another candidate clearly beats it


def choose(
    measured: Mapping[str, Mapping[str, float]], budget: float
) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """(chosen name, why, per-candidate record) from each candidate's numbers against FP32.

    `measured` maps a candidate name to its `latency_p50_ms` and `accuracy_drop_vs_fp32`; FP32
    itself (name "fp32", drop 0) is always a candidate, so a run never ships a slower or a
    less accurate model than FP32 because it was quantized. Fastest p50 within the budget wins,
    except that it displaces the step's own model (INT8, when within budget and not slower than
    FP32 by p50) only if it was faster in every round of the session (`round_p50_ms`, paired by
    round): otherwise the difference is the session's noise, and a rebuild would flip between
    them. An INT8 model slower than FP32 by p50 is never kept: that is the slowdown the default
    `min_speedup` gate refuses."""
    fp32_p50 = measured[FP32]["latency_p50_ms"]
    records: dict[str, dict[str, Any]] = {}
    for name, numbers in measured.items():
        drop = 0.0 if name == FP32 else numbers.get("accuracy_drop_vs_fp32")
        records[name] = {
            "latency_p50_ms": numbers["latency_p50_ms"],
            "speedup_vs_fp32": fp32_p50 / numbers["latency_p50_ms"],
            "accuracy_drop_vs_fp32": drop,
            "within_budget": drop is not None and drop <= budget + 1e-12,
        }
    eligible = [name for name, record in records.items() if record["within_budget"]]
    chosen = min(eligible, key=lambda name: records[name]["latency_p50_ms"])
    held = (
        STEP_MODEL in eligible
        and chosen != STEP_MODEL
        and records[STEP_MODEL]["speedup_vs_fp32"] >= 1.0  # a slowdown is never held on to
        and not _faster_every_round(measured[chosen], measured[STEP_MODEL])
    )
    if held:
        chosen = STEP_MODEL
    for name, record in records.items():
        record["chosen"] = name == chosen
    return chosen, _why(chosen, records, budget, held), records


def _faster_every_round(challenger: Mapping[str, Any], incumbent: Mapping[str, Any]) -> bool:
    """Without per-round numbers, the p50s decide."""
    ours, theirs = challenger.get("round_p50_ms"), incumbent.get("round_p50_ms")
    if not ours or not theirs or len(ours) != len(theirs):
        return challenger["latency_p50_ms"] < incumbent["latency_p50_ms"]
    return all(a < b for a, b in zip(ours, theirs, strict=True))


def _why(chosen: str, records: Mapping[str, Mapping[str, Any]], budget: float, held: bool) -> str:
    def said(name: str) -> str:
        record = records[name]
        if not record["within_budget"]:
            drop = record["accuracy_drop_vs_fp32"]
            return f"{name} over budget ({'unmeasured' if drop is None else f'{100 * drop:+.2f} pt'})"
        return f"{name} {record['speedup_vs_fp32']:.2f}×"

    others = [said(name) for name in records if name != chosen]
    speed = records[chosen]["speedup_vs_fp32"]
    head = (
        f"{chosen}: kept, as no candidate within the {100 * budget:.2f} pt accuracy budget was faster in "
        f"every round ({speed:.2f}× FP32 by p50)"
        if held
        else f"{chosen}: the fastest within the {100 * budget:.2f} pt accuracy budget ({speed:.2f}× FP32)"
        if chosen != FP32
        else "fp32: no quantized candidate is both faster than FP32 and within the "
        f"{100 * budget:.2f} pt accuracy budget"
    )
    return f"{head}; " + ", ".join(others) if others else head
