"""`optimize monitor`: on a real CPU bundle the prober's /metrics parse as Prometheus text with
agreement 1.0; an engine swapped on disk for another model's makes the agreement fall, a damaged
one raises the load-error counter, and the process keeps serving; an unreachable --server is
counted, not fatal. A bundle that does not verify, a port in use, an interval of 0: one line,
exit 2. The probe step, the KServe v2 JSON and the host readings are tested alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from optimize.errors import UsageError
from optimize.fleet.bundle_format import read_bundle
from optimize.fleet.kserve import infer_outputs, infer_request
from optimize.fleet.monitor import METRICS, REASONS, gate_gauges, latency_buckets, open_state, probe_once
from optimize.fleet.node_readings import NodeCollector, memory_pressure, thermal_zones
from tests.conftest import REPO, run_cli
from tests.fleet.test_verify import rehash, tiny_bundles

# every name but the host's own (temperatures, memory pressure), which depend on the host
PROBE_METRICS = [name for name in METRICS if not name.startswith("optimize_node_")]
WAIT_S = 60


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return tiny_bundles(tmp_path_factory.mktemp("bundles"), ("onnxruntime",))["onnxruntime"]


@pytest.fixture
def bundle(pristine, tmp_path) -> Path:
    """A copy of the ONNX Runtime bundle whose engine a test may swap."""
    return Path(shutil.copytree(pristine, tmp_path / pristine.name))


def no_host(tmp_path: Path) -> NodeCollector:
    return NodeCollector(tmp_path / "no-thermal", tmp_path / "no-pressure")


def another_model(path: Path, seed: int = 1) -> None:
    """A real ONNX model with the tiny model's input and output (images [N,3,8,8] → logits [N,10])
    and other weights: another model's engine under this one's name."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).standard_normal((192, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        ],
        "another",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def values(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics text: (name, sorted labels) → value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def families(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# ---- the probe step, in-process


def test_a_probe_of_a_good_engine_agrees_with_the_reference(bundle, tmp_path):
    state = open_state(bundle, node=no_host(tmp_path))
    before = families(generate_latest(state.metrics.registry).decode())
    assert "optimize_canary_agreement_ratio" not in before  # no 0 before anything was measured
    assert "optimize_engine_info" in before
    try:
        result = probe_once(state, now=lambda: 1234.5)
    finally:
        state.close()
    manifest = read_bundle(bundle)
    assert result.ok and result.reason is None and result.problems == ()
    assert result.agreement_top1 == 1.0 and result.max_abs_diff <= manifest.canary.max_abs_diff
    assert 0 <= result.mean_abs_diff <= result.max_abs_diff and 0 <= result.accuracy <= 1
    assert len(result.batch_seconds) >= 1
    text = generate_latest(state.metrics.registry).decode()
    assert families(text) >= {
        *PROBE_METRICS,
        "optimize_probe_failures_total",
        "optimize_canary_latency_seconds_bucket",
    }
    samples = values(text)
    assert samples[("optimize_canary_agreement_ratio", ())] == 1.0
    # the recipe's gates on this class (tests/fleet/test_verify.py GATES), for the central rules
    assert manifest.gates == {"min_agreement": 0.9, "max_latency_p90_ms": 50.0}
    assert samples[("optimize_gate_min_agreement_ratio", ())] == 0.9
    assert samples[("optimize_gate_max_latency_p90_seconds", ())] == 0.05
    assert ("optimize_canary_latency_seconds_bucket", (("le", "0.05"),)) in samples
    assert samples[("optimize_canary_accuracy_ratio", ())] == result.accuracy
    assert samples[("optimize_probe_last_success_timestamp_seconds", ())] == 1234.5
    assert samples[("optimize_canary_latency_seconds_count", ())] == len(result.batch_seconds)
    assert all(samples[("optimize_probe_failures_total", (("reason", r),))] == 0 for r in REASONS)
    info = {key: value for key, value in samples if key == "optimize_engine_info"}
    assert info == {
        "optimize_engine_info": (
            ("device_class", "x86-cpu-onnxruntime"),
            ("engine_key", manifest.engine.engine_key),
            ("model", "tiny"),
            ("runtime", "onnxruntime"),
            ("runtime_version", manifest.runtime.version),
            ("version", str(manifest.model.version)),
        )
    }


def test_an_engine_changed_on_disk_is_reopened_and_each_failure_counted_by_reason(bundle, tmp_path):
    state = open_state(bundle, node=no_host(tmp_path))
    engine = bundle / read_bundle(bundle).engine.file
    counter = state.metrics.failures
    try:
        assert probe_once(state).agreement_top1 == 1.0
        another_model(engine)
        swapped = probe_once(state)
        assert swapped.ok and swapped.agreement_top1 < 0.9 and swapped.problems  # drift, still a probe
        assert state.metrics.canary.values["optimize_canary_agreement_ratio"] == swapped.agreement_top1
        engine.write_bytes(b"\x08\x07not an onnx model")
        damaged = probe_once(state)
        assert (damaged.ok, damaged.reason) == (False, "load_error")
        assert damaged.detail.startswith("onnxruntime cannot open ")
        engine.unlink()
        missing = probe_once(state)
        assert (missing.reason, missing.detail) == (
            "engine_missing",
            f"{engine.relative_to(bundle)} is missing",
        )
        assert counter.labels(reason="load_error")._value.get() == 1
        assert counter.labels(reason="engine_missing")._value.get() == 1
        # the last good numbers stay; the failures say the engine is gone
        assert state.metrics.canary.values["optimize_canary_agreement_ratio"] == swapped.agreement_top1
    finally:
        state.close()


def test_a_release_switched_under_the_folder_is_followed(pristine, tmp_path):
    """As on a node: the prober watches `current`, the rollout points it at the next release."""
    releases = tmp_path / "releases"
    first = Path(shutil.copytree(pristine, releases / "1"))
    second = Path(shutil.copytree(pristine, releases / "2"))
    manifest = read_bundle(second)
    version = manifest.model.version + 1
    old_folder = (second / manifest.engine.file).parent
    old_folder.rename(old_folder.with_name(str(version)))
    moved = Path(manifest.engine.file).parent.with_name(str(version)) / Path(manifest.engine.file).name
    rehash(second, model={"version": version}, engine={"file": moved.as_posix()})
    current = releases / "current"
    current.symlink_to(first.name)
    state = open_state(current, node=no_host(tmp_path))

    def switch(to: Path) -> None:
        link = releases / "next"
        link.symlink_to(to.name)
        os.replace(link, current)  # atomic, as the rollout switches it

    try:
        assert probe_once(state).agreement_top1 == 1.0
        switch(second)
        after = probe_once(state)
        assert after.ok and after.agreement_top1 == 1.0, after.detail
        info = values(generate_latest(state.metrics.registry).decode())
        assert [dict(labels)["version"] for name, labels in info if name == "optimize_engine_info"] == [
            str(version)
        ]
        (second / "canary" / "inputs.npz").write_bytes(b"damaged")
        (second / "bundle.json").touch()
        os.utime(second / "bundle.json", ns=(1, 1))  # changed, whatever the clock's resolution
        damaged = probe_once(state)
        assert damaged.reason == "load_error"
        assert damaged.detail.startswith(
            "the bundle changed and does not check out: files: canary/inputs.npz"
        )
        switch(first)
        assert probe_once(state).agreement_top1 == 1.0
    finally:
        state.close()


def test_an_unreachable_server_is_a_counted_failure(bundle, tmp_path):
    state = open_state(bundle, server=closed_url(), timeout=5, node=no_host(tmp_path))
    first, second = probe_once(state), probe_once(state)
    assert (first.ok, first.reason) == (False, "server_unreachable")
    assert "/v2/models/tiny/infer" in first.detail
    assert second.reason == "server_unreachable"
    assert state.metrics.failures.labels(reason="server_unreachable")._value.get() == 2


def test_open_state_refuses_a_bundle_that_does_not_verify_and_a_file_that_is_no_folder(bundle, tmp_path):
    engine = bundle / read_bundle(bundle).engine.file
    engine.write_bytes(engine.read_bytes() + b"\0")
    with pytest.raises(UsageError, match=r"does not verify: files: .* does not match its SHA-256"):
        open_state(bundle, node=no_host(tmp_path))
    with pytest.raises(UsageError, match="no bundle folder at"):
        open_state(tmp_path / "x.tar.gz", node=no_host(tmp_path))


# ---- pure functions


def test_the_kserve_v2_request_and_response_json():
    images = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([[1, 2]], dtype=np.int64)
    assert infer_request({"images": images, "ids": ids}, ["logits"]) == {
        "inputs": [
            {"name": "images", "shape": [2, 3], "datatype": "FP32", "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]},
            {"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]},
        ],
        "outputs": [{"name": "logits"}],
    }
    response = {
        "model_name": "tiny",
        "outputs": [
            {"name": "extra", "shape": [1], "datatype": "INT32", "data": [7]},
            {"name": "logits", "shape": [2, 2], "datatype": "FP16", "data": [0.5, 1, 2, 3]},
        ],
    }
    logits, extra = infer_outputs(response, ["logits", "extra"])
    assert logits.dtype == np.float16 and logits.tolist() == [[0.5, 1.0], [2.0, 3.0]]
    assert extra.dtype == np.int32 and extra.tolist() == [7]
    with pytest.raises(ValueError, match="no output 'scores'"):
        infer_outputs(response, ["scores"])
    with pytest.raises(ValueError, match="BYTES, not a numeric tensor"):
        infer_outputs({"outputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, ["s"])
    with pytest.raises(ValueError, match="dtype"):
        infer_request({"s": np.array(["a"])}, [])


def test_latency_buckets_surround_the_measured_p50_p90_and_the_latency_gates_in_seconds():
    measured = {"latency_p50_ms": 2.0, "latency_p90_ms": 3.5}
    assert latency_buckets(measured, {}) == (
        0.0005,
        0.001,
        0.002,
        0.003,
        0.0035,
        0.004,
        0.008,
        0.016,
        float("inf"),
    )
    gated = latency_buckets(measured, {"max_latency_p90_ms": 25.0, "min_agreement": 0.9})
    assert 0.025 in gated and len(gated) == 10
    assert latency_buckets({}, {"max_latency_p90_ms": 25.0}) == (0.025, float("inf"))
    assert latency_buckets({}, {})[-1] == float("inf") and len(latency_buckets({}, {})) > 5


def test_gate_gauges_carry_the_recipes_limits_in_base_units():
    assert gate_gauges({"min_agreement": 0.95, "max_latency_p90_ms": 20.0, "min_speedup": 1.0}) == {
        "optimize_gate_min_agreement_ratio": 0.95,
        "optimize_gate_max_latency_p90_seconds": 0.02,
    }
    assert gate_gauges({}) == {}


def test_host_readings_temperatures_by_zone_type_and_memory_pressure(tmp_path):
    for index, (kind, millidegrees) in enumerate([("CPU-therm", "41500"), ("GPU-therm", "39000")]):
        zone = tmp_path / "thermal" / f"thermal_zone{index}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(millidegrees + "\n")
    (tmp_path / "thermal" / "cooling_device0").mkdir()
    pressure = tmp_path / "memory"
    pressure.write_text(
        "some avg10=1.50 avg60=0.20 avg300=0.00 total=123\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=4\n"
    )
    assert list(thermal_zones(tmp_path / "thermal")) == ["CPU-therm", "GPU-therm"]
    assert memory_pressure(pressure.read_text()) == pytest.approx(0.015)
    assert memory_pressure("") is None
    node = NodeCollector(tmp_path / "thermal", pressure)
    assert node.missing == []
    samples = {(f.name, tuple(s.labels.items())): s.value for f in node.collect() for s in f.samples}
    assert samples == {
        ("optimize_node_temperature_celsius", (("zone", "CPU-therm"),)): 41.5,
        ("optimize_node_temperature_celsius", (("zone", "GPU-therm"),)): 39.0,
        ("optimize_node_memory_pressure_ratio", (("window", "avg10"),)): pytest.approx(0.015),
    }
    bare = NodeCollector(tmp_path / "none", tmp_path / "none")
    assert list(bare.collect()) == [] and len(bare.missing) == 2


# ---- the real command


@contextlib.contextmanager
def monitoring(*args: str):
    """`optimize monitor ARGS` as a subprocess, killed (and reaped) at the end whatever happens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "optimize", "monitor", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.output = process.communicate(timeout=30)  # (stdout, stderr)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


def wait_for(process, port: int, condition, what: str) -> dict:
    """Scrape until condition(samples) holds; fail naming `what` after WAIT_S or if the process ends."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the prober ended: {process.communicate()[1]}"
        try:
            samples = values(scrape(port))
        except OSError:
            samples = None
        if samples is not None and condition(samples):
            return samples
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {WAIT_S} s")


def failures(samples: dict, reason: str) -> float:
    return samples.get(("optimize_probe_failures_total", (("reason", reason),)), 0)


def test_the_command_serves_metrics_and_keeps_serving_through_a_swapped_and_a_damaged_engine(bundle):
    port = free_port()
    engine = bundle / read_bundle(bundle).engine.file
    with monitoring(
        str(bundle), "--port", str(port), "--address", "127.0.0.1", "--interval", "0.5"
    ) as process:
        good = wait_for(process, port, lambda s: ("optimize_canary_agreement_ratio", ()) in s, "first probe")
        assert good[("optimize_canary_agreement_ratio", ())] == 1.0
        assert families(scrape(port)) >= set(PROBE_METRICS)
        another_model(engine)
        wait_for(
            process, port, lambda s: s[("optimize_canary_agreement_ratio", ())] < 0.9, "fall of the agreement"
        )
        engine.write_bytes(b"\x08\x07not an onnx model")
        wait_for(process, port, lambda s: failures(s, "load_error") >= 2, "load errors")
        assert process.poll() is None
    stdout, stderr = process.output
    assert stdout.startswith(
        f"monitoring {bundle} (the engine) every 0.5 s; metrics on http://127.0.0.1:{port}/metrics"
    )
    assert "probe failed (load_error): onnxruntime cannot open " in stderr


def test_an_unreachable_server_is_counted_and_the_command_keeps_serving(bundle):
    port = free_port()
    with monitoring(
        str(bundle), "--port", str(port), "--interval", "0.5", "--server", closed_url()
    ) as process:
        wait_for(
            process, port, lambda s: failures(s, "server_unreachable") >= 3, "server_unreachable failures"
        )
        assert process.poll() is None


@pytest.mark.parametrize("case", ["does not verify", "port in use", "interval 0"])
def test_bad_input_is_one_line_exit_2(bundle, case):
    port = free_port()
    args = [str(bundle), "--port", str(port), "--address", "127.0.0.1"]
    with socket.socket() as taken:
        if case == "does not verify":
            (bundle / "canary" / "outputs.npz").unlink()
            expected = f"error: {bundle} does not verify: files: canary/outputs.npz is missing"
        elif case == "port in use":
            taken.bind(("127.0.0.1", port))
            taken.listen()
            expected = f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
        else:
            args += ["--interval", "0"]
            expected = "error: --interval must be a number of seconds above 0, not 0"
        result = run_cli("monitor", *args, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == expected and result.stdout == ""
