"""Regression checks between two builds of one recipe on one device class (pure)."""

from optimize.history import Tolerances, compare

BASE = {
    "status": "ok",
    "reason": "",
    "metrics": {
        "accuracy": 0.98,
        "agreement_top1": 1.0,
        "latency_p50_ms": 2.0,
        "latency_p90_ms": 2.5,
        "size_mb": 11.0,
        "peak_memory_mb": 100.0,
    },
}


def _with(**metrics):
    return {**BASE, "metrics": {**BASE["metrics"], **metrics}}


def regressions(previous, current, tolerances=None):
    return [c.metric for c in compare(previous, current, tolerances or Tolerances()) if c.regression]


def test_unchanged_build_has_no_regression():
    assert regressions(BASE, BASE) == []


def test_accuracy_drop_beyond_tolerance():
    assert regressions(BASE, _with(accuracy=0.97)) == ["accuracy"]
    assert regressions(BASE, _with(accuracy=0.976)) == []


def test_latency_increase_beyond_tolerance_and_floor():
    assert regressions(BASE, _with(latency_p50_ms=2.5)) == ["latency_p50_ms"]
    assert regressions(BASE, _with(latency_p50_ms=2.2)) == []
    tiny = _with(latency_p50_ms=0.02, latency_p90_ms=0.03)
    assert regressions(tiny, _with(latency_p50_ms=0.04, latency_p90_ms=0.03)) == []  # below the noise floor


def test_a_build_that_used_to_succeed_and_now_fails():
    changes = compare(BASE, {"status": "failed", "reason": "parser error", "metrics": {}}, Tolerances())
    assert [(c.metric, c.regression, c.note) for c in changes] == [("status", True, "parser error")]


def test_size_and_memory_growth():
    assert regressions(BASE, _with(size_mb=12.0, peak_memory_mb=130.0)) == ["size_mb", "peak_memory_mb"]
