"""Quantization against the plain libraries, measured in one run.

ResNet-18 on digits (recipes/resnet18-digits-int8.yaml): FP32, ONNX Runtime's quantize_static
with its defaults, nncf.quantize with its defaults (both on the recipe's calibration set) and our
INT8 stage with the recipe's settings: accuracy, size and ONNX Runtime p50 latency at 1 and 2
threads, plus top-1 agreement of our INT8 file between ONNX Runtime and OpenVINO.

all-MiniLM-L6-v2 (recipes/minilm-int4.yaml): FP32, our INT8 stage and our INT4 stage: size,
embedding cosine against FP32 on the repo's sentences, and p50 latency.

Latency: batch 1, every model timed in this process, models and thread counts interleaved over
rounds so that load from other processes hits them alike; the median over rounds is shown.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import yaml
from rich.table import Table

from benchmarks.common import BENCH_ARTIFACTS, REPO, interleaved_p50_ms, run_recipe
from optimize.console import out

RESNET = REPO / "recipes" / "resnet18-digits-int8.yaml"
MINILM = REPO / "recipes" / "minilm-int4.yaml"
THREADS = (1, 2)
ROUNDS = 5


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


def minilm() -> None:
    int4_run = run_recipe(MINILM)
    sentences = yaml.safe_load(MINILM.read_text())["data"]["eval"]
    calibration = {
        **sentences,
        "path": str((MINILM.parent / sentences["path"]).resolve()),
        "samples": 100,
        "seed": 1,
    }
    int8_run = run_recipe(
        recipe_variant(
            MINILM, "bench-minilm-int8", {"precision": "int8", "model_type": "transformer"}, calibration
        )
    )
    export = int4_run.steps[-2]
    steps = {
        "FP32": export,
        "our INT8 stage (nncf, transformer)": int8_run.steps[-1],
        "our INT4 stage": int4_run.steps[-1],
    }
    eval_items, _ = recipe_data(int4_run, "eval")
    p50 = interleaved_p50_ms(
        {label: step.artifact.file for label, step in steps.items()}, eval_items[0], THREADS, ROUNDS
    )

    table = Table(
        title=f"MiniLM · {MINILM.relative_to(REPO)} · {len(eval_items)} sentences, cosine to the FP32 embeddings",
        title_justify="left",
    )
    for column in ("model", "size MB", "% of FP32", "bits/weight", "cosine mean", "cosine min"):
        table.add_column(column, justify="left" if column == "model" else "right")
    latency_columns(table)
    for label, step in steps.items():
        metrics = step.metrics
        table.add_row(
            label,
            f"{metrics['size_mb']:.2f}",
            f"{metrics['size_mb'] / export.metrics['size_mb']:.1%}",
            f"{metrics['bits_per_weight']:.2f}",
            f"{metrics.get('cosine_mean', 1.0):.4f}",
            f"{metrics.get('cosine_min', 1.0):.4f}",
            *latency_cells(p50, label, "FP32"),
        )
    out.print(table)
    int4 = int4_run.steps[-1]
    out.print(
        f"INT4 ({int4.info['mode']}, group {int4.info['group_size']}, ratio {int4.info['ratio']}, "
        f"{int4.info['int4_layers']} INT4 / {int4.info['int8_layers']} INT8 MatMuls): "
        f"{int4.metrics['size_mb'] / export.metrics['size_mb']:.1%} of FP32 (limit 30%), "
        f"cosine {int4.metrics['cosine_mean']:.4f} (limit ≥ 0.97)"
    )


def main() -> None:
    resnet()
    minilm()
