"""Is latency measurement stable? Two back-to-back evaluations of the same engines (the demo
recipe's final model on every CPU target), each spread over fresh worker processes as in a real
run; their p50 must agree within 10%. Shown with the recipe's evaluation settings and with more
processes and time, because on a shared VM the per-process p50 of a sub-millisecond model can
swing by ±20% (thread placement, neighbours on the host)."""

from __future__ import annotations

from rich.table import Table

from benchmarks.common import BENCH_ARTIFACTS, REPO, run_recipe
from optimize.console import out

RECIPE = "recipes/resnet18-digits-edge.yaml"
TARGETS = ["x86-cpu-onnxruntime", "intel-cpu-openvino"]
AGREEMENT = 0.10
PROFILES = {"recipe settings": {}, "8 processes, 4 s": {"latency_processes": 8, "min_time_s": 4.0}}


def main() -> None:
    from optimize.pipeline import Pipeline, RunOptions
    from optimize.recipe.loader import load_recipe
    from optimize.runtimes import RUNTIMES
    from optimize.targets import device_classes_for

    result = run_recipe(RECIPE, targets=TARGETS)
    loaded = load_recipe(REPO / RECIPE)
    classes = device_classes_for(loaded.recipe.device_classes)
    table = Table(title=f"Back-to-back evaluations of the same engine ({RECIPE})", title_justify="left")
    for column in (
        "target",
        "timing",
        "p50 #1 ms",
        "p50 #2 ms",
        "difference",
        "process spread #1 / #2",
        "runs",
        f"within {AGREEMENT:.0%}",
    ):
        table.add_column(column, justify="left" if column in ("target", "timing") else "right")
    for profile, overrides in PROFILES.items():
        settings = loaded.recipe.evaluation.model_copy(update=overrides)
        recipe = loaded.recipe.model_copy(update={"evaluation": settings})
        pipeline = Pipeline(
            type(loaded)(recipe=recipe, path=loaded.path, text=loaded.text),
            RunOptions(artifacts_dir=BENCH_ARTIFACTS, no_cache=True),
        )
        for target in result.targets:
            if target.status != "ok":
                continue
            device_class = classes[target.name]
            runtime = RUNTIMES.get(device_class.runtime)()
            first, second = (
                pipeline.evaluate_engine(target.engine, device_class, runtime, result.reference).metrics
                for _ in range(2)
            )
            difference = abs(first["latency_p50_ms"] - second["latency_p50_ms"]) / first["latency_p50_ms"]
            table.add_row(
                target.name,
                profile,
                f"{first['latency_p50_ms']:.4f}",
                f"{second['latency_p50_ms']:.4f}",
                f"{difference:.1%}",
                f"{first['latency_p50_spread']:.0%} / {second['latency_p50_spread']:.0%}",
                f"{first['latency_runs']:.0f} / {second['latency_runs']:.0f}",
                "[green]yes[/]" if difference <= AGREEMENT else "[red]no[/]",
            )
    out.print(table)
