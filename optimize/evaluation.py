"""Accuracy, agreement with reference outputs, latency, throughput and memory of a Runner.

The statistics are small pure functions; `time_engine` and `score_outputs` drive a runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from optimize.comparison import agreement_suffix

if TYPE_CHECKING:
    from optimize.model_io import ModelIO
    from optimize.recipe.evaluation import EvaluationSpec
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


def resident_mb() -> float:
    """This process's resident memory now (MiB)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_resident_mb() -> float:
    """This process's highest resident memory so far (MiB): the kernel's own high-water mark, so
    nothing samples it while latency is being timed. Linux's VmHWM belongs to the process's own
    memory map; getrusage's maxrss would keep the parent's peak across fork + exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def read_feeds(path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The eval feeds file: inputs by name (stored as `input:<name>`) and the labels."""
    with np.load(path, allow_pickle=False) as stored:
        inputs = {key.removeprefix("input:"): stored[key] for key in stored.files if key.startswith("input:")}
        return inputs, stored["labels"]


def load_outputs(path) -> dict[str, np.ndarray]:
    """A model's outputs by name, as stored in an .npz file."""
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def run_batched(
    runner: Runner, inputs: dict[str, np.ndarray], batch_size: int, min_batch: int = 1
) -> list[np.ndarray]:
    """Every output of the runner (in the engine's output order) over arrays of samples, batch by
    batch; a last batch smaller than the engine's minimum is padded with repeats and the padding
    dropped from the outputs."""
    total = len(next(iter(inputs.values())))
    batches = []
    for start in range(0, total, batch_size):
        count = min(batch_size, total - start)
        batch = {name: value[start : start + count] for name, value in inputs.items()}
        if count < min_batch:
            batch = take_batch(batch, min_batch)
        batches.append([np.asarray(output)[:count] for output in runner.run(batch)])
    return [np.concatenate(parts) for parts in zip(*batches, strict=True)]


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


def time_engine(
    runner: Runner,
    latency_inputs: dict[str, np.ndarray],
    throughput_inputs: dict[str, np.ndarray],
    settings: EvaluationSpec,
) -> tuple[list[float], list[float]]:
    """Milliseconds per batch-`latency` request and per throughput batch, after warm-up (the
    runner has had its warm-up runs when this is called)."""
    latency = time_runs(lambda: runner.timed_run(latency_inputs), 0, settings.min_runs, settings.min_time_s)
    throughput = time_runs(lambda: runner.timed_run(throughput_inputs), 2, 3, settings.throughput_time_s)
    return latency, throughput


def score_outputs(
    runner: Runner,
    io: ModelIO,
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    references: dict[str, dict[str, np.ndarray]],
    task: str,
    labeled: bool,
    batch_size: int,
    min_batch: int = 1,
) -> dict[str, float]:
    """`output_metrics` of a runner over the eval feeds."""
    outputs = io.named(run_batched(runner, inputs, max(batch_size, min_batch), min_batch=min_batch))
    return {
        "eval_samples": float(len(outputs[io.eval_output])),
        **output_metrics(outputs, io.eval_output, labels, references, task, labeled),
    }


def output_metrics(
    outputs: dict[str, np.ndarray],
    eval_output: str,
    labels: np.ndarray,
    references: dict[str, dict[str, np.ndarray]],
    task: str,
    labeled: bool,
) -> dict[str, float]:
    """Accuracy of the scored output and its agreement with each reference's on the same samples
    (the FP32 reference's under the plain names, others' with a `_vs_<name>` suffix); every other
    output's closeness to the reference's under `<metric>.<output>`."""
    scored = outputs[eval_output]
    metrics = {}
    if task == "classification" and labeled:
        metrics["accuracy"] = classification_accuracy(scored, labels)
    for name, reference in references.items():
        suffix = agreement_suffix(name)
        metrics.update(
            {
                f"{key}{suffix}": value
                for key, value in agreement(reference[eval_output], scored, task).items()
            }
        )
        for output, values in outputs.items():
            if output != eval_output:
                closeness = agreement(reference[output], values, task="")
                metrics.update({f"{key}{suffix}.{output}": value for key, value in closeness.items()})
    return metrics
