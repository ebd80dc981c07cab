"""Shared by the benchmarks: run a recipe through the Python API (cached in artifacts/bench), and
time ONNX models side by side under identical conditions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import optimize
from optimize.results import RunResult

REPO = Path(__file__).resolve().parent.parent
BENCH_ARTIFACTS = REPO / "artifacts" / "bench"


def run_recipe(path: Path | str, targets: list[str] | None = None) -> RunResult:
    """The recipe's steps through the pipeline (and the named targets only; none by default);
    unchanged steps come from the cache."""
    return optimize.run(REPO / path, artifacts=BENCH_ARTIFACTS, targets=targets or [], progress=True).result


def onnx_p50_ms(path: Path, feeds: dict[str, np.ndarray], threads: int, seconds: float = 2.0) -> float:
    """Median batch-1 latency of an ONNX file in ONNX Runtime (CPU, `threads` intra-op threads)."""
    from optimize.evaluation import latency_summary, time_runs
    from optimize.onnx_tools import session

    ort_session = session(path, threads=threads)

    def once() -> float:
        start = time.perf_counter()
        ort_session.run(None, feeds)
        return (time.perf_counter() - start) * 1000.0

    return latency_summary(time_runs(once, warmup=20, min_runs=100, min_time_s=seconds))["latency_p50_ms"]


def interleaved_p50_ms(
    models: dict[str, Path], feeds: dict[str, np.ndarray], threads: tuple[int, ...] = (1, 2), rounds: int = 3
) -> dict[tuple[str, int], float]:
    """Median over rounds of each model's p50 at each thread count; models and thread counts take
    turns within every round, so load from other processes hits them alike."""
    import statistics

    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for count in threads:
            for label, path in models.items():
                samples.setdefault((label, count), []).append(onnx_p50_ms(path, feeds, count, seconds=1.0))
    return {key: statistics.median(values) for key, values in samples.items()}
