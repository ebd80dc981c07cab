"""Are the INT8 engines faster than the FP32 ones they replace, and as fast as the plain libraries'?

Each CNN recipe runs through the pipeline (cached after the first time) with both CPU targets.
Then, in this one process, the engines the pipeline built for each target (the INT8 engine and
its FP32 baseline) and the plain libraries' INT8 files are timed through the same Runner the
pipeline evaluates with, at batch 1 and 1 and 2 threads, interleaved over rounds (the engine
that goes first rotates) so that load from other processes hits them alike. p50 is the median
over rounds; a ratio is the median over rounds of the two engines' p50s in the same round.

Anchors (the plain libraries called the way their documentation recommends for CPUs), built from
the recipe's own FP32 file and calibration set:
  ORT per-channel QDQ   onnxruntime.quantization: quant_pre_process, then quantize_static(QDQ,
                        per_channel=True), uint8 activations, int8 weights
  NNCF defaults         nncf.quantize(model, dataset)

Targets (issue 12): MobileNetV2 INT8 ≥ 1.3× its FP32 on both runtimes (OpenVINO's FP32 in f32)
at 1 and 2 threads, within 1 accuracy point, ≥ 90 % of its MACs in INT8; ResNet-18 INT8 (the
demo's and the 139 M-MAC small-stem variant) at least as fast as the faster anchor at 1 and 2
threads, at the anchor's accuracy (within 0.5 points).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

import optimize
from benchmarks.common import BENCH_ARTIFACTS, REPO
from optimize.console import out

TARGETS = ["x86-cpu-onnxruntime", "intel-cpu-openvino"]
THREADS = (1, 2)
ROUNDS = 7
SECONDS = 1.0  # of timing per engine, thread count and round
MOBILENET = "recipes/mobilenetv2-digits-int8.yaml"
RESNETS = ("recipes/resnet18-digits-int8.yaml", "recipes/resnet18-small-stem-digits-int8.yaml")
MIN_SPEEDUP = 1.3
MIN_INT8_MACS = 0.9
ACCURACY_POINTS = {"fp32": 0.01, "anchor": 0.005}


@dataclass
class Engine:
    """One thing to time on one target: a built engine, or an ONNX file the runtime opens as is."""

    path: Path
    accuracy: float | None = None


def p50_ms(runner, feeds: dict[str, np.ndarray]) -> float:
    for _ in range(20):
        runner.run(feeds)
    samples, deadline = [], time.perf_counter() + SECONDS
    while time.perf_counter() < deadline or len(samples) < 50:
        samples.append(runner.timed_run(feeds))
    return statistics.median(samples)


def open_runner(target: str, path: Path, threads: int):
    """The runtime's own Runner (what `optimize run` times with), with `threads` threads."""
    from optimize.registries import RUNTIMES
    from optimize.runtimes.onnxruntime import OnnxRuntimeRunner
    from optimize.runtimes.openvino import OpenVINORunner
    from optimize.targets import builtin_device_classes

    device_class = builtin_device_classes()[target]
    runtime = RUNTIMES.get(device_class.runtime)
    if runtime.name == "onnxruntime":
        return OnnxRuntimeRunner(path, threads, device_class.settings)
    return OpenVINORunner(path, device_class.settings, threads)


def interleaved(target: str, engines: dict[str, Engine], feeds) -> dict[tuple[str, int], list[float]]:
    """Each engine's p50 per round, by (label, threads); the engine that goes first rotates."""
    samples: dict[tuple[str, int], list[float]] = {}
    labels = list(engines)
    for round_ in range(ROUNDS):
        for threads in THREADS:
            for label in labels[round_ % len(labels) :] + labels[: round_ % len(labels)]:
                runner = open_runner(target, engines[label].path, threads)
                samples.setdefault((label, threads), []).append(p50_ms(runner, feeds))
                runner.close()
    return samples


def paired_ratio(samples, slower: str, faster: str, threads: int) -> float:
    """The median over rounds of slower p50 / faster p50 within a round: a slow minute falls on
    both numbers of a ratio, never on one alone."""
    pairs = zip(samples[slower, threads], samples[faster, threads], strict=True)
    return statistics.median(a / b for a, b in pairs)


def pipeline_run(recipe: str):
    return optimize.run(REPO / recipe, artifacts=BENCH_ARTIFACTS, targets=TARGETS, progress=True)


def eval_data(outcome):
    """The run's eval inputs, labels and calibration feeds, as the stages read them."""
    from benchmarks.bench_quantize import recipe_data, stacked

    eval_items, labels = recipe_data(outcome.result, "eval")
    calibration, _ = recipe_data(outcome.result, "calibration")
    return stacked(eval_items), labels, calibration, eval_items[0]


def anchors(fp32: Path, calibration: list[dict], folder: Path) -> dict[str, Path]:
    import nncf
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from optimize.quantization.data import FeedReader

    prepared, ort_qdq, nncf_default = folder / "prepared.onnx", folder / "ort.onnx", folder / "nncf.onnx"
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(
        str(prepared),
        str(ort_qdq),
        FeedReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    onnx.save(nncf.quantize(onnx.load(str(fp32)), nncf.Dataset(calibration)), str(nncf_default))
    return {"anchor: ORT per-channel QDQ": ort_qdq, "anchor: NNCF defaults": nncf_default}


def file_accuracy(target: str, path: Path, inputs, labels) -> float:
    from optimize.evaluation import run_batched

    (logits,) = run_batched(open_runner(target, path, 2), inputs, 64)  # the digits models have one output
    return float((logits.argmax(1) == labels).mean())


def verdict(passed: bool) -> str:
    return "[green]PASS[/]" if passed else "[red]FAIL[/]"


def main() -> None:
    for recipe in (MOBILENET, *RESNETS):  # a table per recipe, printed as soon as it is measured
        outcome = pipeline_run(recipe)
        inputs, labels, calibration, feeds = eval_data(outcome)
        table = Table(
            title=f"INT8 engines against FP32 and the plain libraries · {recipe} · batch 1",
            title_justify="left",
        )
        for column in COLUMNS:
            table.add_column(column, justify="left" if column in LEFT else "right")
        with tempfile.TemporaryDirectory(prefix="bench-int8-") as scratch:
            plain = anchors(outcome.result.steps[-2].artifact.file, calibration, Path(scratch))
            for target in outcome.result.targets:
                for row in compare_on_target(recipe, target, plain, inputs, labels, feeds):
                    table.add_row(*row)
                table.add_section()
        out.print(table)


COLUMNS = (
    "model",
    "target",
    "engine",
    "runs in",
    "accuracy",
    "threads",
    "p50 ms",
    "ratio",
    "goal",
    "result",
)
LEFT = ("model", "target", "engine", "runs in")


def compare_on_target(recipe, target, plain, inputs, labels, feeds) -> list[list[str]]:
    from optimize.columns import execution

    name = Path(recipe).stem
    if target.status != "ok" or "fp32" not in target.baselines:
        return [[name, target.name, f"{target.status}: {target.reason}", "", "", "", "", "", "", ""]]
    fp32 = target.baselines["fp32"]
    engines = {
        "INT8 (ours)": Engine(target.engine.file, target.metrics.get("accuracy")),
        "FP32": Engine(fp32.engine.file, fp32.metrics.get("accuracy")),
    }
    mobilenet = recipe == MOBILENET
    if not mobilenet:
        engines.update(
            {
                label: Engine(path, file_accuracy(target.name, path, inputs, labels))
                for label, path in plain.items()
            }
        )
    samples = interleaved(target.name, engines, feeds)
    p50 = {key: statistics.median(values) for key, values in samples.items()}
    ours = engines["INT8 (ours)"]
    share = target.build.get("int8_mac_share") or 0.0
    rows = []
    for threads in THREADS:
        if mobilenet:
            ratio = paired_ratio(samples, "FP32", "INT8 (ours)", threads)
            drop = engines["FP32"].accuracy - ours.accuracy
            passed = ratio >= MIN_SPEEDUP and drop <= ACCURACY_POINTS["fp32"] and share >= MIN_INT8_MACS
            goal = f"≥ {MIN_SPEEDUP}× FP32, drop ≤ 1 pt, ≥ 90 % INT8 MACs"
        else:
            best = min(
                (label for label in engines if label.startswith("anchor")),
                key=lambda label: p50[label, threads],
            )
            ratio = paired_ratio(samples, best, "INT8 (ours)", threads)
            passed = ratio >= 1.0 and ours.accuracy >= engines[best].accuracy - ACCURACY_POINTS["anchor"]
            goal = f"≥ 1.0× {best.removeprefix('anchor: ')}, accuracy within 0.5 pt"
        for label, engine in engines.items():
            is_ours = label == "INT8 (ours)"
            rows.append(
                [
                    name if threads == THREADS[0] and is_ours else "",
                    target.name if threads == THREADS[0] and is_ours else "",
                    label,
                    (execution(target.build) or "") if is_ours else "",
                    f"{100 * engine.accuracy:.2f}%" if engine.accuracy is not None else "—",
                    str(threads),
                    f"{p50[label, threads]:.3f}",
                    f"{ratio:.2f}×" if is_ours else "",
                    goal if is_ours else "",
                    verdict(passed) if is_ours else "",
                ]
            )
    return rows
