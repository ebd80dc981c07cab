"""The statistics behind every target table: percentiles, agreement, timing loops, batches."""

import numpy as np
import pytest

from optimize.evaluation import agreement, classification_accuracy, latency_summary, take_batch, time_runs


def test_latency_summary_percentiles():
    summary = latency_summary(list(range(1, 101)))
    assert summary["latency_p50_ms"] == pytest.approx(50.5)
    assert summary["latency_p90_ms"] == pytest.approx(90.1)
    assert summary["latency_p99_ms"] == pytest.approx(99.01)
    assert summary["latency_mean_ms"] == pytest.approx(50.5)
    assert summary["latency_runs"] == 100
    assert latency_summary([]) == {}


def test_agreement_for_classifiers():
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.2, 0.1]])
    candidate = np.array([[0.9, 0.1], [0.0, 1.0], [0.0, 1.0], [0.2, 0.1]])
    result = agreement(reference, candidate, "classification")
    assert result["agreement_top1"] == 0.75
    assert result["max_abs_diff"] == pytest.approx(1.0)
    assert "agreement_cosine" not in result


def test_agreement_for_embeddings_is_cosine():
    reference = np.array([[1.0, 0.0], [0.0, 2.0]])
    candidate = np.array([[1.0, 1.0], [0.0, 5.0]])
    result = agreement(reference, candidate, "embedding")
    assert result["cosine_min"] == pytest.approx(np.sqrt(0.5))
    assert result["agreement_cosine"] == pytest.approx((np.sqrt(0.5) + 1) / 2)


def test_accuracy():
    assert classification_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5


def test_time_runs_honours_both_minimums():
    calls = []
    samples = time_runs(lambda: calls.append(1) or 1.0, warmup=3, min_runs=7, min_time_s=0.0)
    assert len(samples) == 7 and len(calls) == 10


def test_take_batch_repeats_small_sets():
    inputs = {"x": np.arange(3).reshape(3, 1)}
    assert take_batch(inputs, 7)["x"].ravel().tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert take_batch(inputs, 2)["x"].ravel().tolist() == [0, 1]


def test_run_batched_pads_a_short_last_batch_to_the_engine_minimum():
    from optimize.evaluation import run_batched

    class MinBatchRunner:
        def run(self, feeds):
            assert len(feeds["x"]) >= 4, "engine refuses batches below 4"
            return [feeds["x"] * 2]

    inputs = {"x": np.arange(10, dtype=np.float32).reshape(10, 1)}
    (outputs,) = run_batched(MinBatchRunner(), inputs, batch_size=4, min_batch=4)
    assert outputs.ravel().tolist() == [2.0 * i for i in range(10)]


def test_run_batched_returns_every_output_in_order():
    from optimize.evaluation import run_batched

    class TwoOutputs:
        def run(self, feeds):
            return [feeds["x"] + 1, feeds["x"].sum(axis=1)]

    inputs = {"x": np.arange(12, dtype=np.float32).reshape(6, 2)}
    first, second = run_batched(TwoOutputs(), inputs, batch_size=4)
    assert first.shape == (6, 2) and second.tolist() == [1, 5, 9, 13, 17, 21]


def test_output_metrics_score_the_eval_output_and_compare_the_others():
    from optimize.evaluation import output_metrics

    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    boxes = np.ones((3, 4))
    reference = {"logits": logits, "boxes": boxes + 0.5}
    metrics = output_metrics(
        {"boxes": boxes, "logits": logits},
        "logits",
        np.array([1, 0, 0]),
        {"fp32": reference, "original": reference},
        "classification",
        labeled=True,
    )
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["agreement_top1"] == 1.0 and metrics["max_abs_diff"] == 0.0
    assert metrics["max_abs_diff.boxes"] == pytest.approx(0.5)
    assert metrics["max_abs_diff_vs_original.boxes"] == pytest.approx(0.5)
    assert "agreement_top1.boxes" not in metrics  # only the scored output is a classifier's


def test_pooled_latency_spreads_over_processes():
    from optimize.evaluation import pooled_latency

    pooled = pooled_latency([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [1.5, 1.5, 1.5]])
    assert pooled["latency_processes"] == 3
    assert pooled["latency_p50_ms"] == 1.5
    assert pooled["latency_p50_spread"] == pytest.approx((2.0 - 1.0) / 1.5)
