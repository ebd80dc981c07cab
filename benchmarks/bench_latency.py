"""Is latency measurement stable? Two back-to-back evaluations of the same engines (the demo
recipe's final model on every CPU target), each in its own fresh worker process as in a real
run; their p50 must agree within 10%."""

from __future__ import annotations

from rich.table import Table

from benchmarks.common import BENCH_ARTIFACTS, REPO, run_recipe
from optimize.console import out

RECIPE = "recipes/resnet18-digits-edge.yaml"
AGREEMENT = 0.10


def main() -> None:
    from optimize.pipeline import Pipeline, RunOptions
    from optimize.recipe.loader import load_recipe
    from optimize.runtimes import RUNTIMES
    from optimize.targets import device_classes_for

    result = run_recipe(RECIPE)
    loaded = load_recipe(REPO / RECIPE)
    pipeline = Pipeline(loaded, RunOptions(artifacts_dir=BENCH_ARTIFACTS, no_cache=True))
    classes = device_classes_for(loaded.recipe.device_classes)
    table = Table(title=f"Back-to-back evaluations of the same engine ({RECIPE})", title_justify="left")
    for column in ("target", "p50 #1 ms", "p50 #2 ms", "difference", "p90 #1 ms", "p90 #2 ms", "runs", f"within {AGREEMENT:.0%}"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for target in result.targets:
        if target.status != "ok":
            continue
        device_class = classes[target.name]
        runtime = RUNTIMES.get(device_class.runtime)()
        first, second = (pipeline.evaluate_engine(target.engine, device_class, runtime, result.reference).metrics for _ in range(2))
        difference = abs(first["latency_p50_ms"] - second["latency_p50_ms"]) / first["latency_p50_ms"]
        table.add_row(
            target.name, f"{first['latency_p50_ms']:.4f}", f"{second['latency_p50_ms']:.4f}", f"{difference:.1%}",
            f"{first['latency_p90_ms']:.4f}", f"{second['latency_p90_ms']:.4f}",
            f"{first['latency_runs']:.0f} / {second['latency_runs']:.0f}",
            "[green]yes[/]" if difference <= AGREEMENT else "[red]no[/]",
        )
    out.print(table)
