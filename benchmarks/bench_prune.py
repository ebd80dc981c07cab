"""Pruning and distillation on the example recipe (recipes/resnet18-digits-prune.yaml): the
unpruned model, pruning alone, pruning + plain fine-tuning (train) and pruning + distillation
for the same epochs, on the same model and data. Latency is ONNX Runtime batch 1 at 1 and 2
threads, every model timed in the same process, interleaved over rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from rich.table import Table

from benchmarks.common import BENCH_ARTIFACTS, REPO, interleaved_p50_ms, run_recipe
from optimize.console import out

RECIPE = REPO / "recipes" / "resnet18-digits-prune.yaml"
THREADS = (1, 2)
ROUNDS = 3


def variants() -> dict[str, list]:
    """Stage lists over the example recipe's own steps; fine-tuning copies distill's schedule."""
    recipe = yaml.safe_load(RECIPE.read_text())
    steps = {next(iter(step)): step for step in recipe["stages"]}
    schedule = {
        k: v for k, v in steps["distill"]["distill"].items() if k in ("epochs", "lr", "batch_size", "seed")
    }
    return {
        "unpruned": [steps["train"], steps["export"]],
        "pruned": [steps["train"], steps["prune"], steps["export"]],
        "pruned + fine-tune": [
            steps["train"],
            steps["prune"],
            {"train": {"id": "finetune", **schedule}},
            steps["export"],
        ],
        "pruned + distill": [steps["train"], steps["prune"], steps["distill"], steps["export"]],
    }


def write_variant(label: str, stages: list) -> Path:
    """The example recipe with other stages, in the bench folder (data paths made absolute)."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["name"] = f"bench-prune-{label.replace(' + ', '-')}"
    recipe["stages"] = stages
    recipe["data"]["calibration"] = str((RECIPE.parent / recipe["data"]["calibration"]).resolve())
    path = BENCH_ARTIFACTS / "recipes" / f"{recipe['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def main() -> None:
    results = {label: run_recipe(write_variant(label, stages)) for label, stages in variants().items()}
    final = {label: result.steps[-1] for label, result in results.items()}
    models = {label: result.final.file for label, result in results.items()}
    spec = results["unpruned"].final.meta["inputs"][0]
    # Dense convolutions take the same time whatever the pixel values, so a seeded random image will do.
    feeds = {
        spec["name"]: np.random.default_rng(0).standard_normal([1, *spec["shape"][1:]]).astype(np.float32)
    }
    p50 = interleaved_p50_ms(models, feeds, THREADS, ROUNDS)

    base = final["unpruned"].metrics
    table = Table(title=f"Pruning and distillation · {RECIPE.relative_to(REPO)}", title_justify="left")
    for column in (
        "model",
        "MACs",
        "params",
        "accuracy",
        *(f"p50 ms {t}T" for t in THREADS),
        *(f"speedup {t}T" for t in THREADS),
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, step in final.items():
        metrics = step.metrics
        table.add_row(
            label,
            f"{metrics['macs'] / 1e6:.2f}M ({metrics['macs'] / base['macs']:.0%})",
            f"{metrics['parameters'] / 1e6:.2f}M",
            f"{100 * metrics['accuracy']:.2f}%",
            *(f"{p50[label, t]:.3f}" for t in THREADS),
            *(f"{p50['unpruned', t] / p50[label, t]:.2f}×" for t in THREADS),
        )
    out.print(table)
    distilled = final["pruned + distill"].metrics
    out.print(
        f"MACs removed: {1 - distilled['macs'] / base['macs']:.1%}; accuracy vs unpruned: "
        f"{100 * (distilled['accuracy'] - base['accuracy']):+.2f} points (distill), "
        f"{100 * (final['pruned + fine-tune'].metrics['accuracy'] - base['accuracy']):+.2f} points (fine-tune)"
    )
