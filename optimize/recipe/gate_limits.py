"""The recipe's `gates:` section: budgets a run's numbers must meet, globally or per target."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from optimize.recipe.base import StrictModel


class GateLimits(StrictModel):
    max_size_mb: PositiveFloat | None = Field(None, description="model or engine size on disk")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="eval accuracy (0-1)")
    max_accuracy_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        description="drop against the FP32 baseline (the model before quantization) on the same target: "
        "accuracy, or 1 − agreement with its outputs without labels",
    )
    min_agreement: float | None = Field(None, ge=0, le=1, description="top-1 agreement (or cosine) with FP32")
    max_latency_p50_ms: PositiveFloat | None = Field(None, description="median batch-1 latency")
    max_latency_p90_ms: PositiveFloat | None = Field(None, description="90th percentile batch-1 latency")
    min_speedup: PositiveFloat | None = Field(
        None, description="FP32 baseline p50 latency / model p50 latency, same target, same session"
    )
    max_peak_memory_mb: PositiveFloat | None = Field(
        None, description="peak resident memory of the process running the engine"
    )
    max_accuracy_drop_vs_original: float | None = Field(
        None,
        ge=0,
        le=1,
        description="drop against the original model (before the first prune, distill or quantize step) "
        "on the same target: accuracy, or 1 − agreement with its outputs without labels",
    )
    min_speedup_vs_original: PositiveFloat | None = Field(
        None, description="original model p50 latency / model p50 latency, same target, same session"
    )
    min_size_ratio_vs_original: PositiveFloat | None = Field(
        None, description="original model's engine size / the model's engine size, same target"
    )


class Gates(GateLimits):
    per_target: dict[str, GateLimits] = Field(default_factory=dict, description="limits for one device class")
