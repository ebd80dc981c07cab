"""What an optimized model bought, per target: its numbers against its two baselines measured in
the same evaluation session. Small pure functions, so gates, tables, the report and the summary
all read the same numbers (their columns are optimize.columns').

The baselines:
  original  the model as it enters the recipe's first compression step (prune, distill or
            quantize): the source model, or what the recipe's `train` steps made of it. It is
            exported unchanged and built for every target.
  fp32      the first ONNX model of the chain (after pruning and distillation, before any
            quantization): what quantization alone changed.

Against each baseline X (same target, same session):
  speedup_vs_X        X's p50 latency ÷ the candidate's p50 latency
  size_ratio_vs_X     X's engine size ÷ the candidate's engine size
  accuracy_drop_vs_X  X's accuracy − the candidate's (both on the same eval samples); without
                      labels, 1 − the candidate's agreement with X's outputs (top-1 for
                      classifiers, mean cosine similarity for embedding models)
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

BASELINES = ("original", "fp32")
COMPARED = ("speedup", "size_ratio", "accuracy_drop")
BASELINE_TEXT = {"original": "the original model", "fp32": "the FP32 baseline"}


def metric_name(quantity: str, baseline: str) -> str:
    return f"{quantity}_vs_{baseline}"


def not_compared(baseline: str, reason: str) -> dict[str, str]:
    """The same reason for every number against one baseline."""
    return {metric_name(quantity, baseline): reason for quantity in COMPARED}


def agreement_suffix(baseline: str) -> str:
    """Agreement with the FP32 reference has plain names; with other models a suffix."""
    return "" if baseline == "fp32" else f"_vs_{baseline}"


def measured_agreement(metrics: Mapping[str, float], baseline: str = "fp32") -> float | None:
    """The candidate's agreement with a model's outputs, as measured: top-1 for classifiers, mean
    cosine for embeddings (the FP32 reference by default)."""
    suffix = agreement_suffix(baseline)
    return metrics.get(f"agreement_top1{suffix}", metrics.get(f"agreement_cosine{suffix}"))


def compare(
    candidate: Mapping[str, float], baseline: Mapping[str, float], name: str
) -> tuple[dict[str, float], dict[str, str]]:
    """(numbers against the baseline, why any of them is missing)."""
    metrics: dict[str, float] = {}
    missing: dict[str, str] = {}
    if candidate.get("latency_p50_ms") and baseline.get("latency_p50_ms"):
        metrics[metric_name("speedup", name)] = baseline["latency_p50_ms"] / candidate["latency_p50_ms"]
    else:
        missing[metric_name("speedup", name)] = "latency was not measured"
    if candidate.get("size_mb") and baseline.get("size_mb"):
        metrics[metric_name("size_ratio", name)] = baseline["size_mb"] / candidate["size_mb"]
    else:
        missing[metric_name("size_ratio", name)] = "an engine size is missing"
    agreement = measured_agreement(candidate, name)
    if "accuracy" in candidate and "accuracy" in baseline:
        metrics[metric_name("accuracy_drop", name)] = baseline["accuracy"] - candidate["accuracy"]
    elif agreement is not None:
        metrics[metric_name("accuracy_drop", name)] = 1.0 - agreement
    else:
        missing[metric_name("accuracy_drop", name)] = "neither accuracy nor agreement was measured"
    return metrics, missing


def baseline_models(
    final: Any, reference: Any | None, original: Any | None, runs_fp32: bool, class_name: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The baselines a target is compared with, and why any is not there (nothing to compare,
    or a class that runs no FP32 model)."""
    candidates = {"original": original, "fp32": reference}
    absent = {
        "original": "the recipe has no prune, distill or quantize step, so the final model is the original "
        "model: there is nothing to compare it with",
        "fp32": "no FP32 ONNX model precedes the final model",
    }
    identical = {
        "original": "the final model is identical to the original model: there is nothing to compare it with",
        "fp32": "the final model is the FP32 baseline (no step after the first ONNX model changes it): "
        "there is nothing to compare it with",
    }
    models: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for name in BASELINES:
        model = candidates[name]
        if model is None:
            reasons.update(not_compared(name, absent[name]))
        elif model.hash == final.hash:
            reasons.update(not_compared(name, identical[name]))
        elif not runs_fp32:
            reasons.update(not_compared(name, f"{class_name} runs no FP32 models (accepted_precisions)"))
        else:
            models[name] = model
    return models, reasons


def speedup_spread(baseline_rounds: Sequence[float], candidate_rounds: Sequence[float]) -> float | None:
    """How much the per-round speedups (adjacent processes) vary: (max − min) / median."""
    ratios = [b / c for b, c in zip(baseline_rounds, candidate_rounds, strict=False) if b and c]
    if len(ratios) < 2:
        return None
    return (max(ratios) - min(ratios)) / statistics.median(ratios)


def _ratio(value: float, more: str, less: str) -> str:
    """8.1× faster / 1.25× slower: a ratio said the way it reads."""
    word, shown = (more, value) if value >= 1 else (less, 1 / value)
    return f"{shown:.1f}× {word}" if shown >= 10 else f"{shown:.2f}× {word}"


def headline(target: Mapping[str, Any]) -> str:
    """One line per target: what the whole recipe bought on it, against the original model."""
    name = target["name"]
    if target["status"] != "ok":
        return f"{name}: {target['status']}" + (f" ({target['reason']})" if target.get("reason") else "")
    metrics = target["metrics"]
    unmeasured = target.get("unmeasured", {})
    original = (target.get("baselines") or {}).get("original")
    if original is None or "speedup_vs_original" not in metrics:
        reason = unmeasured.get("speedup_vs_original", "not measured")
        return f"{name}: no comparison with the original model: {reason}"
    base = original["metrics"]
    parts = [
        f"{base['size_mb']:.3g} MB → {metrics['size_mb']:.3g} MB"
        + (
            f" ({_ratio(metrics['size_ratio_vs_original'], 'smaller', 'larger')})"
            if "size_ratio_vs_original" in metrics
            else ""
        ),
        f"p50 {base['latency_p50_ms']:.3g} → {metrics['latency_p50_ms']:.3g} ms "
        f"({_ratio(metrics['speedup_vs_original'], 'faster', 'slower')})",
    ]
    if "accuracy" in metrics and "accuracy" in base:
        change = 100 * (metrics["accuracy"] - base["accuracy"])
        parts.append(
            f"accuracy {100 * base['accuracy']:.2f} % → {100 * metrics['accuracy']:.2f} % ({change:+.2f} pt)"
        )
    elif "accuracy_drop_vs_original" in metrics:
        parts.append(f"agreement with the original {100 * (1 - metrics['accuracy_drop_vs_original']):.2f} %")
    return f"{name}: original → final: " + ", ".join(parts)
