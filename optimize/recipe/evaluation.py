"""The recipe's `evaluation:` section, in a module of its own: every evaluation process reads it,
and importing the whole recipe schema (every stage and data source) would slow each one down."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from optimize.recipe.base import StrictModel


class EvaluationSpec(StrictModel):
    batch_size: PositiveInt = Field(32, le=4096, description="batch size of the accuracy pass")
    max_samples: PositiveInt | None = Field(None, description="evaluate on at most this many eval samples")
    warmup_runs: int = Field(10, ge=0, le=10_000, description="untimed runs before latency measurement")
    min_runs: PositiveInt = Field(50, le=1_000_000, description="timed batch-1 runs, at least")
    min_time_s: float = Field(
        2.0, ge=0, le=600, description="keep timing batch-1 runs for at least this long"
    )
    throughput_time_s: float = Field(1.0, ge=0, le=600, description="time spent measuring throughput")
    latency_processes: PositiveInt = Field(
        5,
        le=32,
        description="fresh processes the latency runs are spread over (thread placement varies per process)",
    )
