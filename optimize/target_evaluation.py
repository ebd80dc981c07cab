"""One target's evaluation session: the candidate engine and its baselines (the FP32 model before
quantization, the original model before compression) measured side by side.

Every engine is timed in fresh processes that take turns, round after round (A B C, B C A,
C A B, …): whatever the machine does meanwhile (a neighbour's load, frequency changes, a slow
minute) falls on every engine alike, and a speedup is a ratio of numbers from the same session,
never of two measurements made at different times. The first round also scores each engine's
outputs (accuracy, agreement). The whole session is one cache entry, keyed on every engine in it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimize.evaluation import pooled_latency

ROLES = ("candidate", "fp32", "original")  # the engine under test, then its baselines


@dataclass
class Evaluation:
    """One engine's numbers from a session."""

    metrics: dict[str, float]
    latency_samples_ms: list[float] = field(default_factory=list)
    round_p50_ms: list[float] = field(default_factory=list)  # per process, in round order

    def as_record(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "latency_samples_ms": self.latency_samples_ms,
            "round_p50_ms": self.round_p50_ms,
        }


def process_order(engines: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, engine) in the order the processes run: each round times every engine once, and
    the engine that goes first rotates, so none always runs first after a pause."""
    count = len(engines)
    return [
        (round_, engines[(round_ + offset) % count]) for round_ in range(rounds) for offset in range(count)
    ]


def per_process_share(settings):
    """Each process times its share of the recipe's minimum runs and seconds."""
    rounds = settings.latency_processes
    return settings.model_copy(
        update={
            "min_runs": math.ceil(settings.min_runs / rounds),
            "min_time_s": settings.min_time_s / rounds,
            "throughput_time_s": settings.throughput_time_s / rounds,
        }
    )


def pool(results: list[dict[str, Any]], throughput_batch: int, latency_batch: int) -> Evaluation:
    """One engine's processes (in round order) as one Evaluation: latency percentiles over all
    samples, throughput from the median batch time, engine memory as the median over processes,
    peak memory as the highest process peak, and the scores of the process that made them."""
    latency = [result["latency_samples_ms"] for result in results]
    batch_times = [t for result in results for t in result["throughput_samples_ms"]]
    metrics: dict[str, float] = {}
    for result in results:
        metrics.update({k: v for k, v in result["metrics"].items() if k not in metrics})
    metrics.update(pooled_latency(latency))
    metrics["latency_batch"] = float(latency_batch)
    metrics["throughput_batch"] = float(throughput_batch)
    if batch_times:
        metrics["throughput_sps"] = throughput_batch / (statistics.median(batch_times) / 1000.0)
    metrics["engine_memory_mb"] = statistics.median(r["metrics"]["engine_memory_mb"] for r in results)
    metrics["peak_memory_mb"] = max(r["metrics"]["peak_memory_mb"] for r in results)
    return Evaluation(
        metrics=metrics,
        latency_samples_ms=[s for samples in latency for s in samples],
        round_p50_ms=[statistics.median(samples) for samples in latency if samples],
    )


def run_session(
    engines: dict[str, Any],
    worker: Callable[[Any, bool], dict[str, Any]],
    rounds: int,
    throughput_batch: int,
    latency_batch: int,
    on_process: Callable[[], None] = lambda: None,
) -> dict[str, Evaluation]:
    """Evaluations by role. `engines` maps each role to its engine artifact (roles may share
    one; it is then measured once); `worker(engine, score)` runs one fresh process."""
    distinct: dict[str, Any] = {}
    for engine in engines.values():
        distinct.setdefault(engine.hash, engine)
    results: dict[str, list[dict[str, Any]]] = {digest: [] for digest in distinct}
    for round_, digest in process_order(list(distinct), rounds):
        results[digest].append(worker(distinct[digest], round_ == 0))
        on_process()
    pooled = {digest: pool(found, throughput_batch, latency_batch) for digest, found in results.items()}
    return {role: pooled[engine.hash] for role, engine in engines.items()}


def write_timing_inputs(feeds: Path, path: Path, latency_batch: int, throughput_batch: int) -> None:
    """The two batches the timing runs feed (from the start of the eval set), in a file small
    enough that loading it leaves the engine's memory measurement undisturbed."""
    import numpy as np

    from optimize.evaluation import read_feeds, take_batch

    inputs, _ = read_feeds(feeds)
    arrays = {}
    for prefix, batch in (("latency", latency_batch), ("throughput", throughput_batch)):
        arrays.update({f"{prefix}:{name}": value for name, value in take_batch(inputs, batch).items()})
    np.savez(path, **arrays)
