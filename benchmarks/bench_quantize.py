"""Quantization against the plain libraries, measured in one run.

ResNet-18 on digits (recipes/resnet18-digits-int8.yaml): FP32, ONNX Runtime's quantize_static
with its defaults, nncf.quantize with its defaults (both on the recipe's calibration set) and our
INT8 stage with the recipe's settings: accuracy, size and ONNX Runtime p50 latency at 1 and 2
threads, plus top-1 agreement of our INT8 file between ONNX Runtime and OpenVINO.

all-MiniLM-L6-v2 (recipes/minilm-int8.yaml, recipes/minilm-int4.yaml): FP32, our INT8 stage
(backend dynamic: ONNX Runtime's integer MatMul kernels) and our INT4 stage (MatMulNBits with
int8 compute): size, embedding cosine against FP32 on the repo's sentences, and p50 latency on
ONNX Runtime at batch 1 and 32, each ratio against its target (issue 12): INT8 ≥ 1.5× FP32 and
cosine ≥ 0.99, INT4 ≥ 1.2× FP32 and cosine ≥ 0.97, at batch 1 and 32.

Latency: every model timed in this process, models, batches and thread counts interleaved over
rounds so that load from other processes hits them alike; the median over rounds is shown
(ResNet-18: batch 1).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from rich.table import Table

from benchmarks.common import BENCH_ARTIFACTS, REPO, interleaved_p50_ms, run_recipe
from optimize.console import out

RESNET = REPO / "recipes" / "resnet18-digits-int8.yaml"
MINILM = REPO / "recipes" / "minilm-int4.yaml"
MINILM_INT8 = REPO / "recipes" / "minilm-int8.yaml"
THREADS = (1, 2)
ROUNDS = 5
BATCHES = (1, 32)
# issue 12: (speed-up over FP32 on ONNX Runtime at every batch, mean embedding cosine to FP32)
MINILM_TARGETS = {"INT8": (1.5, 0.99), "INT4": (1.2, 0.97)}


def recipe_data(result, role: str):
    """Batch-1 feeds and labels of one data role of a run's recipe, as the stages read them."""
    from optimize.data.base import DataContext
    from optimize.data.provider import ROLES, DataProvider
    from optimize.models.base import open_source
    from optimize.quantization.data import sample_feeds

    loaded = result.recipe
    source = open_source(loaded.recipe.model, loaded.base_dir)
    provider = DataProvider(
        {name: getattr(loaded.recipe.data, name) for name in ROLES}, DataContext(loaded.base_dir, source)
    )
    return sample_feeds(provider, role)


def stacked(items: list[dict]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([item[name] for item in items]) for name in items[0]}


def outputs(path: Path, inputs: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    from optimize.onnx_tools import session

    ort_session = session(path)
    total = len(next(iter(inputs.values())))
    return np.concatenate(
        [
            ort_session.run(None, {k: v[start : start + batch] for k, v in inputs.items()})[0]
            for start in range(0, total, batch)
        ]
    )


def plain_anchors(fp32: Path, calibration: list[dict], folder: Path) -> dict[str, Path]:
    """The libraries called the way their documentation starts: every option at its default."""
    import nncf
    import onnx
    from onnxruntime.quantization import quantize_static

    from optimize.quantization.data import FeedReader

    paths = {
        "ORT quantize_static (defaults)": folder / "ort.onnx",
        "nncf.quantize (defaults)": folder / "nncf.onnx",
    }
    quantize_static(str(fp32), str(paths["ORT quantize_static (defaults)"]), FeedReader(calibration))
    quantized = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset(calibration))
    onnx.save(quantized, str(paths["nncf.quantize (defaults)"]))
    return paths


def openvino_agreement(path: Path, inputs: dict[str, np.ndarray], reference_top1: np.ndarray) -> float:
    """Share of samples whose top-1 class OpenVINO (CPU) and ONNX Runtime agree on."""
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU")
    return float((compiled(inputs)[0].argmax(1) == reference_top1).mean())


def latency_columns(table: Table) -> None:
    for threads in THREADS:
        table.add_column(f"p50 ms {threads}T", justify="right")
    for threads in THREADS:
        table.add_column(f"speedup {threads}T", justify="right")


def latency_cells(p50: dict, label: str, baseline: str) -> list[str]:
    return [f"{p50[label, t]:.3f}" for t in THREADS] + [
        f"{p50[baseline, t] / p50[label, t]:.2f}×" for t in THREADS
    ]


def recipe_variant(source: Path, name: str, quantize: dict, calibration: dict | None = None) -> Path:
    """The recipe with another quantize step (and calibration data), written to the bench folder
    with its data paths made absolute; unchanged steps come from the cache."""
    recipe = yaml.safe_load(source.read_text())
    recipe["name"] = name
    for role, spec in recipe["data"].items():
        if isinstance(spec, str):
            recipe["data"][role] = str((source.parent / spec).resolve())
        elif "path" in spec:
            spec["path"] = str((source.parent / spec["path"]).resolve())
    if calibration is not None:
        recipe["data"]["calibration"] = calibration
    recipe["stages"] = [step for step in recipe["stages"] if "quantize" not in step] + [
        {"quantize": quantize}
    ]
    path = BENCH_ARTIFACTS / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def resnet() -> None:
    result = run_recipe(RESNET)
    export, ours = result.steps[-2], result.steps[-1]
    variants = {
        "our INT8 stage, backend onnxruntime": {"precision": "int8", "backend": "onnxruntime"},
        "our INT8 stage, symmetric (as for TensorRT)": {"precision": "int8", "activations": "symmetric"},
    }
    extra = {
        label: run_recipe(recipe_variant(RESNET, f"bench-resnet18-digits-int8-{index}", quantize)).final.file
        for index, (label, quantize) in enumerate(variants.items())
    }
    eval_items, labels = recipe_data(result, "eval")
    calibration, _ = recipe_data(result, "calibration")
    inputs = stacked(eval_items)
    ours_label = "our INT8 stage (recipe: nncf)"
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as scratch:
        models = {"FP32": export.artifact.file}
        models.update(plain_anchors(export.artifact.file, calibration, Path(scratch)))
        models[ours_label] = ours.artifact.file
        models.update(extra)
        top1 = {label: outputs(path, inputs).argmax(1) for label, path in models.items()}
        accuracy = {label: float((predicted == labels).mean()) for label, predicted in top1.items()}
        size = {label: path.stat().st_size / 1e6 for label, path in models.items()}
        p50 = interleaved_p50_ms(models, eval_items[0], THREADS, ROUNDS)
        agreement = {
            label: openvino_agreement(models[label], inputs, top1[label]) for label in (ours_label, *extra)
        }

    table = Table(
        title=f"INT8 · {RESNET.relative_to(REPO)} · {len(labels)} eval images, {len(calibration)} calibration images",
        title_justify="left",
    )
    for column in ("model", "accuracy", "Δ points", "size MB", "% of FP32"):
        table.add_column(column, justify="left" if column == "model" else "right")
    latency_columns(table)
    for label in models:
        table.add_row(
            label,
            f"{100 * accuracy[label]:.2f}%",
            f"{100 * (accuracy[label] - accuracy['FP32']):+.2f}",
            f"{size[label]:.2f}",
            f"{size[label] / size['FP32']:.1%}",
            *latency_cells(p50, label, "FP32"),
        )
    out.print(table)
    anchors = [label for label in models if label.endswith("(defaults)")]
    best = max(anchors, key=lambda label: (accuracy[label], -p50[label, 1]))
    out.print(
        f"our INT8: {ours.info['activations']} activations ({ours.info['activations_reason']}); "
        f"drop {100 * (accuracy['FP32'] - accuracy[ours_label]):.2f} points (limit 0.5), "
        f"size {size[ours_label] / size['FP32']:.1%} of FP32 (limit 26%); "
        f"best anchor on accuracy: {best}, ours {100 * (accuracy[ours_label] - accuracy[best]):+.2f} points, "
        + ", ".join(f"{p50[best, t] / p50[ours_label, t]:.2f}× its speed at {t}T" for t in THREADS)
    )
    out.print(
        "ONNX Runtime vs OpenVINO (CPU) top-1 agreement (limit ≥ 99%): "
        + ", ".join(f"{label}: {share:.2%}" for label, share in agreement.items())
    )


def interleaved_batch_p50_ms(
    models: dict[str, Path],
    feeds: dict[int, dict[str, np.ndarray]],
    threads: tuple[int, ...] = THREADS,
    rounds: int = ROUNDS,
) -> dict[tuple[str, int, int], float]:
    """Median over rounds of each model's p50 at each batch and thread count, in ONNX Runtime;
    models, batches and thread counts take turns within every round (common.interleaved_p50_ms,
    with batches: a batch-32 MiniLM run takes ~0.5 s, so fewer runs per turn)."""
    from optimize.evaluation import time_runs
    from optimize.onnx_tools import session

    sessions = {
        (label, count): session(path, threads=count) for label, path in models.items() for count in threads
    }
    samples: dict[tuple[str, int, int], list[float]] = {}
    for _ in range(rounds):
        for batch, batch_feeds in feeds.items():
            for count in threads:
                for label in models:
                    ort_session = sessions[label, count]

                    def once(ort_session=ort_session, batch_feeds=batch_feeds) -> float:
                        start = time.perf_counter()
                        ort_session.run(None, batch_feeds)
                        return (time.perf_counter() - start) * 1000.0

                    runs = time_runs(
                        once, warmup=2 if batch > 1 else 10, min_runs=5 if batch > 1 else 50, min_time_s=1.0
                    )
                    samples.setdefault((label, batch, count), []).append(statistics.median(runs))
    return {key: statistics.median(values) for key, values in samples.items()}


def minilm() -> None:
    int4_run = run_recipe(MINILM)
    int8_run = run_recipe(MINILM_INT8)
    export = int4_run.steps[-2]
    int8, int4 = int8_run.steps[-1], int4_run.steps[-1]
    steps = {"FP32": export, "INT8": int8, "INT4": int4}
    names = {
        "FP32": "FP32 (export)",
        "INT8": f"INT8 ({int8.info['backend']}: {int8.info['format']})",
        "INT4": f"INT4 (group {int4.info['group_size']}, ratio {int4.info['ratio']}, "
        f"accuracy_level {int4.info['accuracy_level']}, INT8 layers {int4.info['int8_format']})",
    }
    eval_items, _ = recipe_data(int4_run, "eval")
    feeds = {batch: stacked(eval_items[:batch]) for batch in BATCHES}
    p50 = interleaved_batch_p50_ms({label: step.artifact.file for label, step in steps.items()}, feeds)

    table = Table(
        title=f"MiniLM · {MINILM_INT8.relative_to(REPO)}, {MINILM.relative_to(REPO)} · {len(eval_items)} sentences, "
        "cosine to the FP32 embeddings · ONNX Runtime p50 ms",
        title_justify="left",
    )
    for column in ("model", "size MB", "% of FP32", "bits/weight", "cosine mean", "cosine min"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for batch in BATCHES:
        for threads in THREADS:
            table.add_column(f"b{batch} {threads}T", justify="right")
    for label, step in steps.items():
        metrics = step.metrics
        table.add_row(
            names[label],
            f"{metrics['size_mb']:.2f}",
            f"{metrics['size_mb'] / export.metrics['size_mb']:.1%}",
            f"{metrics['bits_per_weight']:.2f}",
            f"{metrics.get('cosine_mean', 1.0):.4f}",
            f"{metrics.get('cosine_min', 1.0):.4f}",
            *(
                f"{p50[label, batch, t]:.2f}"
                + ("" if label == "FP32" else f" ({p50['FP32', batch, t] / p50[label, batch, t]:.2f}×)")
                for batch in BATCHES
                for t in THREADS
            ),
        )
    out.print(table)

    checks = Table(title="MiniLM against issue 12's targets (ONNX Runtime, same run)", title_justify="left")
    for column in ("check", "measured", "target", "result"):
        checks.add_column(column, justify="left" if column == "check" else "right")
    for label, (speedup, cosine) in MINILM_TARGETS.items():
        for batch in BATCHES:
            for t in THREADS:
                ratio = p50["FP32", batch, t] / p50[label, batch, t]
                checks.add_row(
                    f"{label} speed-up, batch {batch}, {t} thread{'s' if t > 1 else ''}",
                    f"{ratio:.2f}×",
                    f"≥ {speedup:.1f}×",
                    "PASS" if ratio >= speedup else "[bold red]FAIL[/]",
                )
        measured = steps[label].metrics["cosine_mean"]
        checks.add_row(
            f"{label} cosine to FP32 (mean)",
            f"{measured:.4f}",
            f"≥ {cosine:.2f}",
            "PASS" if measured >= cosine else "[bold red]FAIL[/]",
        )
    out.print(checks)
    out.print(
        f"INT8: {int8.info['kernels']}; {int8.info['int8_layers']} MatMuls, {int8.info['int8_embeddings']} embeddings "
        f"({int8.info['format_reason']}). "
        f"INT4: {int4.info['int4_layers']} INT4 / {int4.info['int8_layers']} INT8 MatMuls, "
        f"{int4.metrics['size_mb'] / export.metrics['size_mb']:.1%} of FP32 (limit 30%)"
    )


def main() -> None:
    resnet()
    minilm()
