"""The recipe's `gates:` section: budgets a run's numbers must meet, globally or per target.

Each limit declares the metric it reads and which way it passes (`Limit`), so a new gate is one
field here: `optimize.gates.GATE_METRICS` is derived from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, PositiveFloat

from optimize.recipe.base import StrictModel


@dataclass(frozen=True)
class Limit:
    """What a gate field limits: the measured metric, and "max" (passes when measured ≤ limit)
    or "min" (passes when measured ≥ limit)."""

    metric: str
    direction: Literal["max", "min"]


class GateLimits(StrictModel):
    max_size_mb: Annotated[PositiveFloat | None, Limit("size_mb", "max")] = Field(
        None, description="model or engine size on disk"
    )
    min_accuracy: Annotated[float | None, Limit("accuracy", "min")] = Field(
        None, ge=0, le=1, description="eval accuracy (0-1)"
    )
    max_accuracy_drop: Annotated[float | None, Limit("accuracy_drop_vs_fp32", "max")] = Field(
        None,
        ge=0,
        le=1,
        description="drop against the FP32 baseline (the model before quantization) on the same target: "
        "accuracy, or 1 − agreement with its outputs without labels",
    )
    min_agreement: Annotated[float | None, Limit("agreement", "min")] = Field(
        None, ge=0, le=1, description="top-1 agreement (or cosine) with FP32"
    )
    max_latency_p50_ms: Annotated[PositiveFloat | None, Limit("latency_p50_ms", "max")] = Field(
        None, description="median batch-1 latency"
    )
    max_latency_p90_ms: Annotated[PositiveFloat | None, Limit("latency_p90_ms", "max")] = Field(
        None, description="90th percentile batch-1 latency"
    )
    min_speedup: Annotated[PositiveFloat | None, Limit("speedup_vs_fp32", "min")] = Field(
        None,
        description="FP32 baseline p50 latency / model p50 latency, same target, same session; when not "
        "set, 1.0 on every target with an FP32 baseline (a quantized engine slower than FP32 fails); "
        "null turns that default off",
    )
    max_peak_memory_mb: Annotated[PositiveFloat | None, Limit("peak_memory_mb", "max")] = Field(
        None, description="peak resident memory of the process running the engine"
    )
    max_accuracy_drop_vs_original: Annotated[float | None, Limit("accuracy_drop_vs_original", "max")] = Field(
        None,
        ge=0,
        le=1,
        description="drop against the original model (before the first prune, distill or quantize step) "
        "on the same target: accuracy, or 1 − agreement with its outputs without labels",
    )
    min_speedup_vs_original: Annotated[PositiveFloat | None, Limit("speedup_vs_original", "min")] = Field(
        None, description="original model p50 latency / model p50 latency, same target, same session"
    )
    min_size_ratio_vs_original: Annotated[PositiveFloat | None, Limit("size_ratio_vs_original", "min")] = (
        Field(None, description="original model's engine size / the model's engine size, same target")
    )


# Limits that hold where the recipe does not set them, on targets that measured their metric:
# a quantized engine must not be slower than the FP32 model it replaces.
DEFAULT_LIMITS: dict[str, float] = {"min_speedup": 1.0}


def gate_limits() -> dict[str, Limit]:
    """Every gate field of GateLimits with what it limits, in field order."""
    limits = {}
    for name, info in GateLimits.model_fields.items():
        (limit,) = [item for item in info.metadata if isinstance(item, Limit)]
        limits[name] = limit
    return limits


class Gates(GateLimits):
    per_target: dict[str, GateLimits] = Field(default_factory=dict, description="limits for one device class")
