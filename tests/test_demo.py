"""The demo recipe (`make demo`) end to end: what a user sees first, the original-vs-final
headline per target measured in the run, at the top of the terminal summary, summary.md and the
report; the comparisons in the manifest for every target that ran; and the nightly rebuild of
the run's quantized model."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

RECIPE = "recipes/resnet18-digits-edge.yaml"
COMPARISONS = ("speedup_vs_original", "accuracy_drop_vs_original", "size_ratio_vs_original")


def test_demo_shows_original_vs_final_per_target_and_its_run_rebuilds(artifacts):
    run = run_cli("run", RECIPE, "--artifacts", str(artifacts), "--quiet")
    assert run.returncode == 0, run.stdout + run.stderr
    headline = run.stdout[run.stdout.index("Original → final, per target") :]
    assert "x86-cpu-onnxruntime: original → final: 44.7 MB →" in headline and "× faster" in headline

    run_dir = (
        artifacts
        / "resnet18-digits-edge"
        / (artifacts / "resnet18-digits-edge" / "LATEST").read_text().strip()
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["original"]["before_step"] == "prune" and manifest["original"]["export"] is not None
    ran = [target for target in manifest["targets"] if target["status"] == "ok"]
    assert {target["name"] for target in ran} >= {"x86-cpu-onnxruntime", "intel-cpu-openvino"}
    for target in ran:
        assert all(name in target["metrics"] for name in COMPARISONS), target["unmeasured"]
        original = target["baselines"]["original"]["metrics"]
        assert target["metrics"]["speedup_vs_original"] == pytest.approx(
            original["latency_p50_ms"] / target["metrics"]["latency_p50_ms"]
        )
        assert target["metrics"]["size_ratio_vs_original"] > 20

    summary = (run_dir / "summary.md").read_text()
    first_table = summary.index("| target |")
    assert summary.index("Original → final") < first_table
    assert summary.index("- x86-cpu-onnxruntime: original → final") < first_table
    report = (run_dir / "report.html").read_text()
    assert report.index("Original → final, per target") < report.index("<h2>Stages</h2>")

    rebuilt = run_cli("rebuild", "--device-class", "x86-cpu-onnxruntime", "--recipe", "resnet18-digits-edge",
                      "--artifacts", str(artifacts), "--quiet")  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "x86-cpu-onnxruntime: ok" in rebuilt.stdout
