"""The evaluation session's protocol (pure): which process runs when, and how one engine's
processes pool into one set of numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from optimize.target_evaluation import per_process_share, pool, process_order, run_session


def test_every_round_times_every_engine_once_and_the_first_engine_rotates():
    order = process_order(["a", "b", "c"], 3)
    assert order == [
        (0, "a"), (0, "b"), (0, "c"),
        (1, "b"), (1, "c"), (1, "a"),
        (2, "c"), (2, "a"), (2, "b"),
    ]  # fmt: skip


def _result(samples, engine_mb, peak_mb, batch_ms=(10.0,), **quality):
    return {
        "metrics": {"engine_memory_mb": engine_mb, "peak_memory_mb": peak_mb, **quality},
        "latency_samples_ms": list(samples),
        "throughput_samples_ms": list(batch_ms),
    }


def test_pool_keeps_the_scores_pools_latency_and_takes_median_engine_and_highest_peak_memory():
    evaluation = pool(
        [
            _result([1.0, 1.0], 10.0, 100.0, accuracy=0.9),
            _result([2.0, 2.0], 30.0, 120.0),
            _result([3.0, 3.0], 20.0, 110.0),
        ],
        throughput_batch=8,
        latency_batch=1,
    )
    m = evaluation.metrics
    assert m["accuracy"] == 0.9 and m["latency_p50_ms"] == 2.0 and m["latency_processes"] == 3
    assert m["engine_memory_mb"] == 20.0 and m["peak_memory_mb"] == 120.0
    assert m["throughput_sps"] == pytest.approx(8 / 0.010)
    assert evaluation.round_p50_ms == [1.0, 2.0, 3.0]


def test_a_session_runs_shared_engines_once_and_scores_only_in_the_first_round():
    calls = []

    def worker(engine, score):
        calls.append((engine.hash, score))
        return _result([1.0], 5.0, 50.0, **({"accuracy": 0.5} if score else {}))

    final, fp32 = SimpleNamespace(hash="q"), SimpleNamespace(hash="f")
    evaluations = run_session(
        {"candidate": final, "fp32": fp32, "original": fp32},
        worker,
        rounds=2,
        throughput_batch=4,
        latency_batch=1,
    )
    assert calls == [("q", True), ("f", True), ("f", False), ("q", False)]
    assert evaluations["fp32"] is evaluations["original"]
    assert evaluations["candidate"].metrics["accuracy"] == 0.5


def test_each_process_times_its_share():
    from optimize.recipe.evaluation import EvaluationSpec

    share = per_process_share(
        EvaluationSpec(min_runs=50, min_time_s=2.0, throughput_time_s=1.0, latency_processes=5)
    )
    assert (share.min_runs, share.min_time_s, share.throughput_time_s) == (10, 0.4, 0.2)
