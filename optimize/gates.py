"""Gates: the recipe's budgets checked against what a run measured, for CI.

`decide` is pure: limits and measured numbers in, one GateResult per limit out. The writers turn
results into gates.json, a JUnit XML file (one test case per gate) and a Markdown summary.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from optimize.columns import (
    COMPARISON_COLUMNS,
    GATE_COLUMNS,
    TARGET_COLUMNS,
    Column,
    comparison_records,
    rows,
    target_notes,
)
from optimize.comparison import headline, measured_agreement
from optimize.recipe.gate_limits import DEFAULT_LIMITS, gate_limits

# gate field → (measured metric, direction): "max" passes when measured ≤ limit, "min" when ≥.
# Derived from the GateLimits fields, which declare both: a new gate is one field there.
GATE_METRICS: dict[str, tuple[str, str]] = {
    name: (limit.metric, limit.direction) for name, limit in gate_limits().items()
}
MODEL_GATES = ("max_size_mb", "min_accuracy")  # also checked on the final model itself


@dataclass(frozen=True)
class GateResult:
    gate: str
    target: str  # a device class, or "model" for the final model file
    limit: float
    measured: float | None
    status: str  # passed | failed | skipped
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "failed"


def limits_for(gates, target: str) -> dict[str, float]:
    """Global limits, overridden by the target's own; a limit set to null (explicitly) is off."""
    limits: dict[str, float | None] = {}
    for level in (gates, gates.per_target.get(target)):
        if level is not None:
            limits.update(
                {name: getattr(level, name) for name in GATE_METRICS if name in level.model_fields_set}
            )
    return {name: limit for name, limit in limits.items() if limit is not None}


def defaults_for(gates, target: str) -> dict[str, float]:
    """The default limits the recipe leaves in place for a target (neither level sets them)."""
    levels = [level for level in (gates, gates.per_target.get(target)) if level is not None]
    return {
        name: limit
        for name, limit in DEFAULT_LIMITS.items()
        if not any(name in level.model_fields_set for level in levels)
    }


def check(gate: str, target: str, limit: float, measured: float | None, why_missing: str = "") -> GateResult:
    metric, direction = GATE_METRICS[gate]
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        detail = f"{metric} was not measured" + (f": {why_missing}" if why_missing else "")
        return GateResult(gate, target, limit, None, "failed", detail)
    passed = measured <= limit if direction == "max" else measured >= limit
    symbol = "≤" if direction == "max" else "≥"
    detail = f"{metric} {measured:.6g} {'' if passed else 'not '}{symbol} {limit:g}"
    return GateResult(gate, target, limit, float(measured), "passed" if passed else "failed", detail)


def target_measurements(metrics: dict[str, float]) -> dict[str, float | None]:
    """The numbers gates read from a target's metrics. A number that was not measured stays None
    (the gate fails and says why): nothing is filled in that could not fail."""
    measured: dict[str, float | None] = {metric: metrics.get(metric) for metric, _ in GATE_METRICS.values()}
    measured["agreement"] = measured_agreement(metrics)
    return measured


def decide(gates, targets: list[dict[str, Any]], model_metrics: dict[str, float]) -> list[GateResult]:
    """targets: [{"name", "status", "reason", "metrics", "unmeasured"}] (unmeasured: metric → why
    it is missing); model_metrics: the final step's."""
    results: list[GateResult] = []
    for gate in MODEL_GATES:
        limit = getattr(gates, gate)
        if limit is not None:
            metric = GATE_METRICS[gate][0]
            results.append(check(gate, "model", limit, model_metrics.get(metric)))
    for target in targets:
        limits = limits_for(gates, target["name"])
        if target["status"] != "ok":
            results.extend(
                GateResult(
                    gate,
                    target["name"],
                    limit,
                    None,
                    "failed" if target["status"] == "failed" else "skipped",
                    f"target {target['status']}: {target['reason']}",
                )
                for gate, limit in limits.items()
            )
            continue
        measured = target_measurements(target["metrics"])
        why = target.get("unmeasured", {})
        results.extend(
            check(
                gate,
                target["name"],
                limit,
                measured[GATE_METRICS[gate][0]],
                why.get(GATE_METRICS[gate][0], ""),
            )
            for gate, limit in limits.items()
        )
        for gate, limit in defaults_for(gates, target["name"]).items():
            value = measured[GATE_METRICS[gate][0]]
            if value is not None:  # a default holds only where its number exists
                result = check(gate, target["name"], limit, value)
                results.append(replace(result, detail=f"{result.detail} (default)"))
    return results


def gates_json(results: list[GateResult]) -> dict[str, Any]:
    return {
        "passed": all(r.passed for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "gates": [asdict(r) for r in results],
    }


def junit_xml(results: list[GateResult], suite: str) -> str:
    """One <testcase> per gate: CI systems show failures natively."""
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(r.status == "failed" for r in results)),
        skipped=str(sum(r.status == "skipped" for r in results)),
        errors="0",
    )
    for result in results:
        case = ET.SubElement(root, "testcase", classname=f"{suite}.{result.target}", name=result.gate)
        if result.status == "failed":
            ET.SubElement(case, "failure", message=result.detail, type="GateFailed").text = result.detail
        elif result.status == "skipped":
            ET.SubElement(case, "skipped", message=result.detail)
        else:
            ET.SubElement(case, "system-out").text = result.detail
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# Status cells' first word → the icon put before it; any other status gets "⏭️".
ICONS = {"ok": "✅", "passed": "✅", "yes": "✅", "failed": "❌", "REGRESSION": "❌", "no": "❌"}


def _markdown_cell(column: Column, text: str) -> str:
    text = text.replace("|", "\\|")
    if column.kind == "status" and text:
        return f"{ICONS.get(text.partition(' ')[0], '⏭️')} {text}"
    return text


def markdown_table(columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The one Markdown renderer: every table of summary.md is this loop over a column list."""
    lines = [
        "| " + " | ".join(c.header for c in columns) + " |",
        "| " + " | ".join("---:" if c.align == "right" else "---" for c in columns) + " |",
    ]
    for cells in rows(columns, records):
        shown = [_markdown_cell(c, text) for c, text in zip(columns, cells, strict=False)]
        shown += [""] * (len(columns) - len(cells))  # a reason in place of the values, then blanks
        lines.append("| " + " | ".join(shown) + " |")
    return lines


def summary_markdown(manifest: dict[str, Any], results: list[GateResult], links: dict[str, str]) -> str:
    """A pull-request comment: verdict, headline numbers, the gate table, links to MLflow."""
    failed = [r for r in results if r.status == "failed"]
    verdict = "❌ gates failed" if failed else "✅ all gates passed"
    recipe = manifest["recipe"]["name"]
    lines = [
        f"## `{recipe}` · {verdict}",
        "",
        f"Run `{manifest['run_id']}` on {manifest['host']['cpu']}.",
        "",
    ]
    if manifest["targets"]:
        lines += ["**Original → final, per target** (measured side by side in this run):", ""]
        lines += [f"- {headline(target)}" for target in manifest["targets"]]
        lines += ["", *markdown_table(TARGET_COLUMNS, manifest["targets"]), ""]
        notes = target_notes(manifest["targets"])
        if notes:
            lines += [f"- {line}" for line in notes] + [""]
        comparisons = comparison_records(manifest["targets"])
        if comparisons:
            lines += ["**Against the baselines** (same target, same session):", ""]
            lines += [*markdown_table(COMPARISON_COLUMNS, comparisons), ""]
    if results:
        lines += [*markdown_table(GATE_COLUMNS, [asdict(result) for result in results]), ""]
    else:
        lines += ["No gates are set in the recipe.", ""]
    if links:
        shown = [
            f"[{name}]({url})" if url.startswith("http") else f"{name}: `{url}`"
            for name, url in links.items()
        ]
        lines += ["MLflow: " + " · ".join(shown), ""]
    return "\n".join(lines)
