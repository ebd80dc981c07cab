"""Rich tables for the terminal: per step, per target, and the `stages` / `targets` listings."""

from __future__ import annotations

from rich.table import Table


def _number(value: float | None, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value / scale:.{digits}f}{suffix}"


def _count(value: float | None) -> str:
    if value is None:
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _points(value: float | None) -> str:
    """An absolute drop in a 0-1 score, in percentage points."""
    return "—" if value is None else f"{100 * value:+.2f} pt"


def steps_table(result) -> Table:
    table = Table(title=f"Stages · {result.recipe.recipe.name} · run {result.run_id}", title_justify="left")
    for column in (
        "#",
        "step",
        "stage",
        "source",
        "time",
        "size MB",
        "params",
        "MACs",
        "bits/w",
        "accuracy",
        "agreement",
    ):
        table.add_column(column, justify="right" if column not in ("step", "stage", "source") else "left")
    for step in result.steps:
        m = step.metrics
        agreement = m.get("agreement_top1", m.get("agreement_cosine"))
        table.add_row(
            str(step.index + 1),
            step.step_id,
            step.stage,
            "[dim]cache[/]" if step.cached else "[bold]ran[/]",
            f"{step.seconds:.1f}s",
            _number(m.get("size_mb")),
            _count(m.get("parameters")),
            _count(m.get("macs")),
            _number(m.get("bits_per_weight"), 1),
            _percent(m.get("accuracy")),
            _percent(agreement),
        )
    return table


def targets_table(result) -> Table:
    table = Table(title="Targets", title_justify="left")
    columns = (
        "target",
        "runtime",
        "status",
        "accuracy",
        "agreement",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "throughput/s",
        "engine MB",
        "peak MB",
        "size MB",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("target", "runtime", "status") else "right")
    for target in result.targets:
        m = target.metrics
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(
            target.status, f"[yellow]{target.status}[/]"
        )
        if target.evaluation is not None and target.evaluation_cached:
            status += " [dim](cache)[/]"
        table.add_row(
            target.name,
            f"{target.runtime} {target.runtime_version}",
            status,
            _percent(m.get("accuracy")),
            _percent(m.get("agreement_top1", m.get("agreement_cosine"))),
            _number(m.get("latency_p50_ms"), 3),
            _number(m.get("latency_p90_ms"), 3),
            _number(m.get("latency_p99_ms"), 3),
            _number(m.get("throughput_sps"), 0),
            _number(m.get("engine_memory_mb"), 1),
            _number(m.get("peak_memory_mb"), 1),
            _number(m.get("size_mb")),
        )
    return table


def comparisons_table(target_records: list[dict]) -> Table:
    """Each target's model against its baselines, all timed in the same session."""
    from optimize.comparison import COMPARISON_COLUMNS, comparison_rows

    formats = {
        "percent": _percent,
        "ms": lambda v: _number(v, 3),
        "mb": _number,
        "times": lambda v: _number(v, 2, suffix="×"),
        "points": _points,
    }
    table = Table(title="Against the baselines (same target, same session)", title_justify="left")
    for column in ("target", "baseline", *(header for header, _, _ in COMPARISON_COLUMNS)):
        table.add_column(column, justify="left" if column in ("target", "baseline") else "right")
    for target, baseline, values in comparison_rows(target_records):
        if isinstance(values, str):
            table.add_row(target, baseline, f"[dim]{values}[/]")
        else:
            table.add_row(
                target,
                baseline,
                *(formats[kind](v) for (_, kind, _), v in zip(COMPARISON_COLUMNS, values, strict=True)),
            )
    return table


def gates_table(results) -> Table:
    table = Table(title="Gates", title_justify="left")
    for column in ("gate", "target", "limit", "measured", "result"):
        table.add_column(column, justify="right" if column in ("limit", "measured") else "left")
    style = {"passed": "[green]pass[/]", "failed": "[red]FAIL[/]", "skipped": "[yellow]skipped[/]"}
    for result in results:
        measured = "—" if result.measured is None else f"{result.measured:.4g}"
        table.add_row(
            result.gate,
            result.target,
            f"{result.limit:g}",
            measured,
            f"{style[result.status]} {result.detail}",
        )
    return table


def changes_table(changes, previous: dict, current: dict) -> Table:
    table = Table(
        title=f"Previous build ({previous['kind']} {previous['run_id']}, {previous['time'][:19]}) vs this one",
        title_justify="left",
    )
    for column in ("metric", "previous", "now", "change", "verdict"):
        table.add_column(column, justify="right" if column in ("previous", "now") else "left")
    for change in changes:

        def show(value):
            return f"{value:.4g}" if isinstance(value, float) else str(value)

        table.add_row(
            change.metric,
            show(change.previous),
            show(change.current),
            change.note,
            "[red]REGRESSION[/]" if change.regression else "[green]ok[/]",
        )
    return table


def history_table(records: list[dict]) -> Table:
    table = Table(title="Builds", title_justify="left")
    for column in (
        "time",
        "recipe",
        "device class",
        "kind",
        "run",
        "runtime",
        "status",
        "accuracy",
        "p50 ms",
        "p90 ms",
        "size MB",
        "model",
    ):
        table.add_column(column)
    for record in records:
        m = record["metrics"]
        table.add_row(
            record["time"][:19].replace("T", " "),
            record["recipe"],
            record["device_class"],
            record["kind"],
            record["run_id"],
            f"{record['runtime']} {record['runtime_version']}",
            record["status"],
            _percent(m.get("accuracy")),
            _number(m.get("latency_p50_ms"), 3),
            _number(m.get("latency_p90_ms"), 3),
            _number(m.get("size_mb")),
            record["model_hash"][:12],
        )
    return table


def target_reasons(result) -> list[str]:
    """Why a target did not run, and what its build changed that was measured."""
    lines = [f"{t.name}: {t.status} — {t.reason}" for t in result.targets if t.reason]
    return lines + [f"{t.name}: {note}" for t in result.targets for note in t.notes]


def device_classes_table(classes: dict, availability: dict) -> Table:
    table = Table(title="Device classes", title_justify="left")
    for column in (
        "name",
        "runtime",
        "arch",
        "precisions",
        "build here",
        "run here",
        "why not",
        "description",
    ):
        table.add_column(column)
    for name, device_class in classes.items():
        available = availability[name]
        table.add_row(
            name,
            device_class.runtime
            + (f" {device_class.runtime_version}" if device_class.runtime_version else ""),
            device_class.arch,
            ", ".join(device_class.accepted_precisions),
            "[green]yes[/]" if available.can_build else "[red]no[/]",
            "[green]yes[/]" if available.can_run else "[red]no[/]",
            available.reason,
            device_class.description,
        )
    return table
