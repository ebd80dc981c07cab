"""Regression checks between two builds of one recipe on one device class (pure)."""

from optimize.build_history import Tolerances, compare

HOST = {"arch": "x86_64", "cpu": "Xeon", "cpu_count": "2", "os": "Linux 6.1", "python": "3.11.7"}
BASE = {
    "status": "ok",
    "reason": "",
    "hardware": HOST,
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


def test_a_metric_the_previous_build_had_and_this_one_lacks_is_a_regression():
    lacking = {**BASE, "metrics": {k: v for k, v in BASE["metrics"].items() if k != "agreement_top1"}}
    changes = [c for c in compare(BASE, lacking, Tolerances()) if c.regression]
    assert [(c.metric, c.current) for c in changes] == [("agreement_top1", None)]
    assert "missing now" in changes[0].note


def test_latency_from_another_host_is_not_compared_and_says_so():
    elsewhere = {**_with(latency_p50_ms=9.0), "hardware": {**HOST, "cpu": "EPYC", "cpu_count": "16"}}
    changes = {c.metric: c for c in compare(BASE, elsewhere, Tolerances())}
    assert not any(c.regression for c in changes.values())
    assert (
        "not compared" in changes["latency_p50_ms"].note
        and "EPYC (16 cores" in changes["latency_p50_ms"].note
    )
    unrecorded = {k: v for k, v in BASE.items() if k != "hardware"}
    assert (
        "unrecorded host"
        in {c.metric: c for c in compare(unrecorded, BASE, Tolerances())}["latency_p50_ms"].note
    )
    # accuracy does not depend on the host: still compared
    assert regressions(BASE, {**_with(accuracy=0.9), "hardware": elsewhere["hardware"]}) == ["accuracy"]


def test_speedups_over_the_baselines_are_shown_but_never_a_regression_on_their_own():
    changes = {
        c.metric: c
        for c in compare(_with(speedup_vs_original=8.0), _with(speedup_vs_original=4.0), Tolerances())
    }
    assert (
        not changes["speedup_vs_original"].regression and "not checked" in changes["speedup_vs_original"].note
    )
