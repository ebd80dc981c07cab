"""--pushgateway: the pure mapping from a target record to Prometheus samples, then runs and a
rebuild pushing to a real Pushgateway (Debian's prometheus-pushgateway, on loopback), and a run
with the gateway down that still succeeds with one warning and its records intact."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

import optimize
from optimize.tracking.pushgateway import grouping_key, metric_samples
from tests.conftest import tiny_recipe_dict

PUSHGATEWAY = shutil.which("prometheus-pushgateway")
CLASS = "x86-cpu-onnxruntime"


def _record(**overrides):
    record = {
        "recipe": "tiny",
        "device_class": CLASS,
        "run_id": "20260101-000000-abcd",
        "kind": "run",
        "status": "ok",
        "precision": "int8",
        "metrics": {
            "accuracy": 0.55,
            "agreement_top1": 0.89,
            "latency_p50_ms": 2.0,
            "latency_p90_ms": 3.0,
            "latency_p99_ms": 5.0,
            "throughput_sps": 1000.0,
            "size_mb": 0.25,
            "speedup_vs_fp32": 1.5,
            "speedup_vs_original": 2.0,
            "cosine_mean": 0.99,
        },
        "gates_passed": True,
    }
    return {**record, **overrides}


def _by_name(samples):
    found = {}
    for sample in samples:
        found.setdefault(sample.name, []).append(sample)
    return found


def test_a_target_record_maps_to_base_unit_samples_with_run_labels():
    samples = _by_name(metric_samples(_record()))
    labels = {"run_id": "20260101-000000-abcd", "kind": "run", "precision": "int8"}
    value = {name: found[0].value for name, found in samples.items() if len(found) == 1}
    assert value["optimize_build_accuracy_ratio"] == 0.55
    assert value["optimize_build_agreement_ratio"] == 0.89
    assert value["optimize_build_latency_p50_seconds"] == pytest.approx(0.002)
    assert value["optimize_build_latency_p90_seconds"] == pytest.approx(0.003)
    assert value["optimize_build_latency_p99_seconds"] == pytest.approx(0.005)
    assert value["optimize_build_throughput_samples_per_second"] == 1000.0
    assert value["optimize_build_size_bytes"] == 250_000
    assert value["optimize_build_gates_passed"] == 1.0
    assert {s.labels["baseline"]: s.value for s in samples["optimize_build_speedup_ratio"]} == {
        "fp32": 1.5,
        "original": 2.0,
    }
    assert {s.labels["status"]: s.value for s in samples["optimize_build_status"]} == {
        "ok": 1.0,
        "built": 0.0,
        "skipped": 0.0,
        "failed": 0.0,
    }
    for found in samples.values():
        for sample in found:
            assert {k: sample.labels[k] for k in labels} == labels
            assert "recipe" not in sample.labels and "device_class" not in sample.labels  # the group's
    assert not any("cosine" in name for name in samples)  # only the documented metrics
    assert grouping_key(_record()) == {"recipe": "tiny", "device_class": CLASS}


def test_an_unmeasured_metric_is_left_out_and_a_failed_gate_is_0():
    record = _record(status="built", metrics={"size_mb": 1.0}, gates_passed=False, kind="rebuild")
    samples = _by_name(metric_samples(record))
    assert set(samples) == {
        "optimize_build_size_bytes",
        "optimize_build_gates_passed",
        "optimize_build_status",
    }
    assert samples["optimize_build_gates_passed"][0].value == 0.0
    assert {s.labels["status"] for s in samples["optimize_build_status"] if s.value == 1.0} == {"built"}
    assert samples["optimize_build_size_bytes"][0].labels["kind"] == "rebuild"
    no_gates = _by_name(metric_samples(_record(gates_passed=None, precision="")))
    assert "optimize_build_gates_passed" not in no_gates


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.fixture
def pushgateway(tmp_path):
    if PUSHGATEWAY is None:
        pytest.skip(
            "prometheus-pushgateway is not installed (Debian: apt-get install prometheus-pushgateway)"
        )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "pushgateway.log").open("wb")  # noqa: SIM115 — open for the server's lifetime
    process = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _get(url + "/-/ready")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"the pushgateway did not start: {(tmp_path / 'pushgateway.log').read_text()}"
                    )
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _pushed(url: str) -> dict[tuple[str, str], dict[str, list]]:
    """(recipe, device_class) → metric name → samples, of what the gateway holds from optimize."""
    from prometheus_client.parser import text_string_to_metric_families

    groups: dict[tuple[str, str], dict[str, list]] = {}
    for family in text_string_to_metric_families(_get(url + "/metrics")):
        for sample in family.samples:
            if sample.labels.get("job") == "optimize" and sample.name.startswith("optimize_build_"):
                group = groups.setdefault((sample.labels["recipe"], sample.labels["device_class"]), {})
                group.setdefault(sample.name, []).append(sample)
    return groups


def _recipe(write_recipe, targets):
    stages = [*tiny_recipe_dict()["stages"], {"quantize": {"precision": "int8"}}]
    return write_recipe(tiny_recipe_dict(stages=stages, targets=targets, tracking={"enabled": False}))


@pytest.mark.slow
def test_run_and_rebuild_push_one_group_per_device_class(write_recipe, tmp_path, pushgateway):
    other = "arm64-cpu-onnxruntime"  # built but not run on x86: pushed with its status all the same
    path = _recipe(write_recipe, [CLASS, other])
    artifacts = tmp_path / "artifacts"
    outcome = optimize.run(optimize.load_recipe(path), artifacts=artifacts, pushgateway=pushgateway)
    assert outcome.exit_code == 0 and outcome.warnings == []

    groups = _pushed(pushgateway)
    assert set(groups) == {("tiny", CLASS), ("tiny", other)}
    built = groups[("tiny", CLASS)]
    target = {t.name: t for t in outcome.targets}[CLASS]
    (p50,) = built["optimize_build_latency_p50_seconds"]
    assert p50.value == pytest.approx(target.metrics["latency_p50_ms"] / 1000)
    assert p50.labels["run_id"] == outcome.run_id and p50.labels["kind"] == "run"
    assert p50.labels["precision"] == "int8"
    for name in (
        "optimize_build_accuracy_ratio",
        "optimize_build_agreement_ratio",
        "optimize_build_latency_p90_seconds",
        "optimize_build_latency_p99_seconds",
        "optimize_build_throughput_samples_per_second",
        "optimize_build_size_bytes",
        "optimize_build_speedup_ratio",
        "optimize_build_gates_passed",
    ):
        assert name in built, name
    status = {s.labels["status"]: s.value for s in built["optimize_build_status"]}
    assert status["ok"] == 1.0
    other_target = {t.name: t for t in outcome.targets}[other]
    other_status = {s.labels["status"]: s.value for s in groups[("tiny", other)]["optimize_build_status"]}
    assert other_status[other_target.status] == 1.0

    rebuilt = optimize.rebuild(CLASS, artifacts=artifacts, pushgateway=pushgateway)
    assert rebuilt.warnings == []
    after = _pushed(pushgateway)
    (p50,) = after[("tiny", CLASS)]["optimize_build_latency_p50_seconds"]
    assert p50.labels["run_id"] == rebuilt.rebuild_id and p50.labels["kind"] == "rebuild"
    assert p50.value == pytest.approx(rebuilt.target.metrics["latency_p50_ms"] / 1000)
    assert after[("tiny", other)] == groups[("tiny", other)]  # the other class's group is untouched


@pytest.mark.slow
def test_with_the_gateway_down_the_run_succeeds_and_says_so(write_recipe, tmp_path):
    from click.testing import CliRunner

    from optimize.cli import main

    path = _recipe(write_recipe, [CLASS])
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    artifacts = tmp_path / "artifacts"
    args = ["run", str(path), "--artifacts", str(artifacts), "--pushgateway", down, "--quiet"]
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    (build,) = optimize.history(artifacts=artifacts)
    (manifest_path,) = artifacts.glob(f"*/{build['run_id']}/manifest.json")
    run_dir = manifest_path.parent
    shown = "".join(result.output.split())  # the console wraps long lines, paths included
    assert "".join(f"warning: pushgateway {down} unreachable: ".split()) in shown
    assert "".join(f"the run's records are complete in {run_dir}".split()) in shown
    assert "ConnectionRefused" in shown or "Connectionrefused" in shown
    manifest = json.loads(manifest_path.read_text())
    assert manifest["status"] == "FINISHED" and manifest["targets"][0]["status"] == "ok"
    assert manifest["targets"][0]["metrics"]["latency_p50_ms"] > 0


def test_the_cli_takes_pushgateway_from_the_environment(monkeypatch):
    from click.testing import CliRunner

    from optimize.cli import main

    seen = {}

    def fake_run(recipe, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(optimize.api, "run", fake_run)
    result = CliRunner(env={"OPTIMIZE_PUSHGATEWAY": "http://gw:9091"}).invoke(main, ["run", "r.yaml"])
    assert result.exit_code == 0 and seen["pushgateway"] == "http://gw:9091"
