"""Accuracy, agreement with the FP32 reference, latency, throughput and memory of a Runner.

The statistics are small pure functions; `evaluate_runner` drives a runner over the eval data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from optimize.data.provider import DataProvider
    from optimize.recipe.schema import EvaluationSpec
    from optimize.runtimes.base import Runner


def latency_summary(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        return {}
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return {
        "latency_p50_ms": float(p50),
        "latency_p90_ms": float(p90),
        "latency_p99_ms": float(p99),
        "latency_mean_ms": float(samples.mean()),
        "latency_std_ms": float(samples.std()),
        "latency_runs": float(samples.size),
    }


def pooled_latency(per_process: list[list[float]]) -> dict[str, float]:
    """Percentiles over the samples of several processes, plus how far their medians spread:
    thread placement differs from process to process, so one process alone can mislead."""
    medians = [float(np.median(samples)) for samples in per_process if samples]
    metrics = latency_summary([s for samples in per_process for s in samples])
    metrics["latency_processes"] = float(len(medians))
    metrics["latency_p50_spread"] = (
        (max(medians) - min(medians)) / float(np.median(medians)) if medians else 0.0
    )
    return metrics


def classification_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def agreement(reference: np.ndarray, candidate: np.ndarray, task: str) -> dict[str, float]:
    """How close a model's outputs are to the FP32 reference's on the same samples."""
    reference = reference.astype(np.float64).reshape(len(reference), -1)
    candidate = candidate.astype(np.float64).reshape(len(candidate), -1)
    difference = np.abs(reference - candidate)
    result = {"max_abs_diff": float(difference.max(initial=0.0)), "mean_abs_diff": float(difference.mean())}
    if task == "classification":
        result["agreement_top1"] = float((reference.argmax(1) == candidate.argmax(1)).mean())
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = (reference * candidate).sum(1) / np.maximum(norms, 1e-12)
    result["cosine_mean"] = float(cosine.mean())
    result["cosine_min"] = float(cosine.min())
    if task == "embedding":
        result["agreement_cosine"] = result["cosine_mean"]
    return result


def headline_agreement(metrics: dict[str, float]) -> float | None:
    """The one agreement number gates and tables use: top-1 for classifiers, cosine otherwise."""
    return metrics.get("agreement_top1", metrics.get("agreement_cosine"))


class MemorySampler:
    """Peak resident memory of this process above its level at start, sampled every 5 ms."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._baseline = self._process.memory_info().rss
        self._peak = self._baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self._peak - self._baseline) / 2**20


def collect_outputs(runner: Runner, data: DataProvider, batch_size: int, max_samples: int | None):
    """First outputs and labels over the eval set, in order (in-process, for step metrics)."""
    outputs, labels, seen = [], [], 0
    for feeds, batch_labels in data.numpy_batches("eval", batch_size):
        if max_samples is not None and seen >= max_samples:
            break
        if max_samples is not None and seen + len(batch_labels) > max_samples:
            keep = max_samples - seen
            feeds = {name: value[:keep] for name, value in feeds.items()}
            batch_labels = batch_labels[:keep]
        outputs.append(np.asarray(runner.run(feeds)[0]))
        labels.append(batch_labels)
        seen += len(batch_labels)
    return np.concatenate(outputs), np.concatenate(labels)


def run_batched(
    runner: Runner, inputs: dict[str, np.ndarray], batch_size: int, min_batch: int = 1
) -> np.ndarray:
    """First outputs of the runner over arrays of samples, batch by batch; a last batch smaller
    than the engine's minimum is padded with repeats and the padding dropped from the outputs."""
    total = len(next(iter(inputs.values())))
    outputs = []
    for start in range(0, total, batch_size):
        count = min(batch_size, total - start)
        batch = {name: value[start : start + count] for name, value in inputs.items()}
        if count < min_batch:
            batch = take_batch(batch, min_batch)
        outputs.append(np.asarray(runner.run(batch)[0])[:count])
    return np.concatenate(outputs)


def time_runs(run: Callable[[], float], warmup: int, min_runs: int, min_time_s: float) -> list[float]:
    """Milliseconds per run, after warm-up, until both min_runs and min_time_s are reached."""
    for _ in range(warmup):
        run()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - start < min_time_s:
        samples.append(run())
    return samples


def take_batch(inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The first `batch` samples (repeated when there are fewer), contiguous as a runtime wants."""
    have = len(next(iter(inputs.values())))
    repeats = -(-batch // have)
    return {
        name: np.ascontiguousarray(
            np.concatenate([value] * repeats)[:batch] if repeats > 1 else value[:batch]
        )
        for name, value in inputs.items()
    }


def evaluate_runner(
    runner: Runner,
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    reference_outputs: np.ndarray | None,
    settings: EvaluationSpec,
    task: str,
    labeled: bool,
    throughput_batch: int,
    max_batch: int | None = None,
    latency_batch: int = 1,
    latency_only: bool = False,
) -> tuple[dict[str, float], list[float]]:
    """All per-target numbers, plus the raw latency samples (for distribution plots). Latency is
    per request at `latency_batch` (1, unless the engine accepts no smaller batch)."""
    if latency_only:
        return {}, time_runs(
            lambda: runner.timed_run(take_batch(inputs, latency_batch)),
            settings.warmup_runs,
            settings.min_runs,
            settings.min_time_s,
        )
    metrics: dict[str, float] = {}
    batch_size = max(min(settings.batch_size, max_batch or settings.batch_size), latency_batch)
    outputs = run_batched(runner, inputs, batch_size, min_batch=latency_batch)
    metrics["eval_samples"] = float(len(outputs))
    if task == "classification" and labeled:
        metrics["accuracy"] = classification_accuracy(outputs, labels)
    if reference_outputs is not None:
        metrics.update(agreement(reference_outputs[: len(outputs)], outputs, task))

    single = take_batch(inputs, latency_batch)
    samples = time_runs(
        lambda: runner.timed_run(single), settings.warmup_runs, settings.min_runs, settings.min_time_s
    )
    metrics.update(latency_summary(samples))
    metrics["latency_batch"] = float(latency_batch)

    batch = take_batch(inputs, throughput_batch)
    batch_times = time_runs(lambda: runner.timed_run(batch), 2, 3, settings.throughput_time_s)
    metrics["throughput_batch"] = float(throughput_batch)
    metrics["throughput_sps"] = throughput_batch / (float(np.median(batch_times)) / 1000.0)
    device_memory = runner.device_memory_mb()
    if device_memory is not None:
        metrics["device_memory_mb"] = device_memory
    return metrics, samples
