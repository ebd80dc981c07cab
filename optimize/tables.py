"""Rich tables for the terminal: per step, per target, and the `stages` / `targets` listings.

The columns and their plain-text values are optimize.columns' (the same as the HTML report's and
summary.md's); this only adds colour to status cells."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from optimize.columns import (
    CHANGE_COLUMNS,
    COMPARISON_COLUMNS,
    DEVICE_CLASS_COLUMNS,
    GATE_COLUMNS,
    HISTORY_COLUMNS,
    STEP_COLUMNS,
    TARGET_COLUMNS,
    Column,
    comparison_records,
    rows,
)

# Status cells' first word → style; any other status is yellow.
STYLES = {
    "ok": "green",
    "passed": "green",
    "yes": "green",
    "ran": "bold",
    "cache": "dim",
    "failed": "red",
    "REGRESSION": "red",
    "no": "red",
}


def _cell(column: Column, text: str) -> str:
    if column.kind != "status" or text == "":
        return escape(text)
    word, _, rest = text.partition(" ")
    return f"[{STYLES.get(word, 'yellow')}]{escape(word)}[/]" + (f" {escape(rest)}" if rest else "")


def render(title: str, columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> Table:
    """The one rich renderer: every terminal table is this loop over a column list."""
    table = Table(title=title, title_justify="left")
    body = rows(columns, records)
    for column in columns:
        # The names that key a row never break; the rest folds where it must: nothing is cut off.
        table.add_column(column.header, justify=column.align, no_wrap=column.key, overflow="fold")
    for cells in body:
        shown: list[str | Text] = [_cell(column, text) for column, text in zip(columns, cells, strict=False)]
        if len(cells) < len(columns):  # the reason the values are missing, in their place
            shown[-1] = Text(cells[-1], style="dim", justify="left")
        table.add_row(*shown)
    return table


def steps_table(step_records: list[dict], title: str) -> Table:
    """The run's steps, from their manifest records."""
    return render(title, STEP_COLUMNS, step_records)


def targets_table(target_records: list[dict]) -> Table:
    """The run's targets, from their manifest records."""
    return render("Targets", TARGET_COLUMNS, target_records)


def comparisons_table(target_records: list[dict]) -> Table:
    """Each target's model against its baselines, all timed in the same session."""
    return render(
        "Against the baselines (same target, same session)",
        COMPARISON_COLUMNS,
        comparison_records(target_records),
    )


def gates_table(results) -> Table:
    return render("Gates", GATE_COLUMNS, [asdict(result) for result in results])


def changes_table(changes, previous: dict, current: dict) -> Table:
    return render(
        f"Previous build ({previous['kind']} {previous['run_id']}, {previous['time'][:19]}) vs this one",
        CHANGE_COLUMNS,
        [asdict(change) for change in changes],
    )


def history_table(records: list[dict]) -> Table:
    return render("Builds", HISTORY_COLUMNS, records)


def device_classes_table(classes: dict, availability: dict) -> Table:
    records = [
        {
            "name": name,
            "runtime": device_class.runtime
            + (f" {device_class.runtime_version}" if device_class.runtime_version else ""),
            "arch": device_class.arch,
            "precisions": ", ".join(device_class.accepted_precisions),
            "can_build": availability[name].can_build,
            "can_run": availability[name].can_run,
            "reason": availability[name].reason,
            "description": device_class.description,
        }
        for name, device_class in classes.items()
    ]
    return render("Device classes", DEVICE_CLASS_COLUMNS, records)
