"""A self-contained HTML report of one run: tables per stage and per target, gates, and plots
(size and accuracy through the stages, accuracy against latency per target and precision, and
the latency distribution per target), with the images embedded so the file travels alone."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optimize.columns import (
    COMPARISON_COLUMNS,
    GATE_COLUMNS,
    STEP_COLUMNS,
    TARGET_COLUMNS,
    Column,
    comparison_records,
    rows,
    target_notes,
)
from optimize.comparison import headline
from optimize.store import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2330;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#5b6475;margin-bottom:1.5rem}
table{border-collapse:collapse;margin:1rem 0 2rem;font-size:.9rem;width:100%}
th,td{border-bottom:1px solid #e3e6ec;padding:.35rem .6rem;text-align:right} th{background:#f5f7fa}
td.l,th.l{text-align:left}
.ok{color:#17803d;font-weight:600} .bad{color:#c0262d;font-weight:600} .warn{color:#a86500;font-weight:600}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1.5rem}
figure{margin:0;border:1px solid #e3e6ec;border-radius:6px;padding:.5rem;background:#fff}
figure img{width:100%} figcaption{color:#5b6475;font-size:.85rem;padding:.3rem}
ul.headline{font-size:1.05rem;line-height:1.6}
"""


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


# Status cells' first word → CSS class; any other status is "warn", and "" leaves it plain.
STATUS_CLASS = {
    "ok": "ok",
    "passed": "ok",
    "yes": "ok",
    "failed": "bad",
    "REGRESSION": "bad",
    "no": "bad",
    "ran": "",
    "cache": "",
}


def _cell(column: Column, text: str) -> str:
    word, _, rest = text.partition(" ")
    css = STATUS_CLASS.get(word, "warn") if column.kind == "status" and text else ""
    if not css:
        return html.escape(text)
    return f"<span class='{css}'>{html.escape(word)}</span>" + (f" {html.escape(rest)}" if rest else "")


def _table(columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> str:
    """The one HTML renderer: every table of the report is this loop over a column list."""

    def align(column: Column) -> str:
        return " class=l" if column.align == "left" else ""

    head = "".join(f"<th{align(c)}>{html.escape(c.header)}</th>" for c in columns)
    body = []
    for cells in rows(columns, records):
        shown = [f"<td{align(c)}>{_cell(c, text)}</td>" for c, text in zip(columns, cells, strict=False)]
        if len(cells) < len(columns):  # the reason the values are missing, across their columns
            span = len(columns) - len(cells) + 1
            shown[-1] = f"<td class=l colspan={span}><span class='warn'>{html.escape(cells[-1])}</span></td>"
        body.append("<tr>" + "".join(shown) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def stage_plot(steps: list[dict[str, Any]]) -> str | None:
    """Size (bars) and accuracy (line) after each step."""
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s["id"] for s in steps]
    sizes = [s["metrics"].get("size_mb", 0.0) for s in steps]
    accuracy = [s["metrics"].get("accuracy") for s in steps]
    figure, left = plt.subplots(figsize=(7, 3.6))
    left.bar(labels, sizes, color="#8fb3e8", label="size MB")
    left.set_ylabel("size on disk (MB)")
    for index, size in enumerate(sizes):
        left.annotate(f"{size:.3g}", (index, size), ha="center", va="bottom", fontsize=8)
    if any(a is not None for a in accuracy):
        right = left.twinx()
        right.plot(
            labels, [a * 100 if a is not None else float("nan") for a in accuracy], "o-", color="#c0262d"
        )
        right.set_ylabel("eval accuracy (%)", color="#c0262d")
    left.set_title("Size and accuracy through the stages")
    return _png(figure)


def pareto_plot(targets: list[dict[str, Any]], precision: str) -> str | None:
    """Accuracy (or agreement) against p50 latency: each target's model and its baselines (the
    original model and the FP32 baseline), all from the same session."""
    points = []
    for target in targets:
        if target["status"] != "ok":
            continue
        m = target["metrics"]
        score = m.get("accuracy", m.get("agreement_cosine"))
        if score is not None and m.get("latency_p50_ms"):
            points.append((target["name"], f"final {precision}", m["latency_p50_ms"], score))
        for name, baseline in (target.get("baselines") or {}).items():
            base = baseline["metrics"]
            base_score = base.get("accuracy", base.get("agreement_cosine"))
            if base_score is not None and base.get("latency_p50_ms"):
                points.append((target["name"], name, base["latency_p50_ms"], base_score))
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.6))
    markers = {"original": "s", "fp32": "^"}
    for name, label, latency, score in points:
        axis.scatter(latency, score * 100, marker=markers.get(label, "o"), s=60)
        axis.annotate(
            f"{name} {label}", (latency, score * 100), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    axis.set_xlabel("p50 latency, batch 1 (ms)")
    axis.set_ylabel("accuracy (%)")
    axis.set_title("Accuracy against latency: final model and baselines per target")
    axis.grid(alpha=0.3)
    return _png(figure)


def latency_plot(targets: list[dict[str, Any]]) -> str | None:
    """Latency samples of every engine of each target's session, final model and baselines."""
    series = []
    for target in targets:
        if target.get("latency_samples_ms"):
            series.append((f"{target['name']} final", target["latency_samples_ms"]))
        for name, baseline in (target.get("baselines") or {}).items():
            if baseline.get("latency_samples_ms"):
                series.append((f"{target['name']} {name}", baseline["latency_samples_ms"]))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.9 + 0.5 * len(series)))
    axis.boxplot([s for _, s in series], vert=False, whis=(1, 99), showfliers=False)
    axis.set_yticks(range(1, len(series) + 1), [name for name, _ in series])
    axis.set_xscale("log")
    axis.set_xlabel("batch-1 latency (ms, log scale), whiskers at p1 / p99")
    axis.set_title("Latency per engine, timed side by side")
    axis.grid(alpha=0.3, axis="x")
    return _png(figure)


def render(manifest: dict[str, Any], gates: dict[str, Any] | None) -> str:
    name = html.escape(manifest["recipe"]["name"])
    steps, targets = manifest["steps"], manifest["targets"]
    precision = steps[-1]["output"].get("precision", "fp32") if steps else "fp32"
    headlines = "".join(f"<li>{html.escape(headline(t))}</li>" for t in targets)
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in target_notes(targets))
    parts = [
        f"<h1>{name}</h1>",
        f"<div class='meta'>run {html.escape(manifest['run_id'])} · {html.escape(manifest['status'])} · "
        f"{html.escape(manifest['finished'][:19])} · {html.escape(manifest['host']['cpu'])} · "
        f"{len(steps)} steps, {len(targets)} targets in {manifest['seconds']:.1f}s</div>",
        "<h2>Original → final, per target</h2>",
        f"<p class='meta'>Measured side by side in this run: each target's final engine and its baselines "
        f"timed in one session of alternating fresh processes.</p><ul class='headline'>{headlines}</ul>",
        "<h2>Stages</h2>",
        _table(STEP_COLUMNS, steps),
        "<h2>Targets</h2>",
        _table(TARGET_COLUMNS, targets),
        "<h2>Against the baselines (same target, same session)</h2>",
        _table(COMPARISON_COLUMNS, comparison_records(targets)),
    ]
    if notes:
        parts += ["<h3>Why targets did not run, and build notes</h3>", f"<ul>{notes}</ul>"]
    if gates and gates["gates"]:
        parts += ["<h2>Gates</h2>", _table(GATE_COLUMNS, gates["gates"])]
    plots = [
        (stage_plot(steps), "Size and eval accuracy after each step"),
        (
            pareto_plot(targets, precision),
            "Accuracy against p50 latency: the final model and its baselines per target",
        ),
        (latency_plot(targets), "Batch-1 latency samples per engine, from the same sessions"),
    ]
    figures = "".join(
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{image}'><figcaption>{html.escape(caption)}</figcaption></figure>"
        for image, caption in plots
        if image
    )
    parts += ["<h2>Plots</h2>", f"<div class='plots'>{figures}</div>"]
    tracking = manifest.get("tracking") or {}
    if tracking:
        parts.append(f"<p class='meta'>MLflow: {html.escape(tracking.get('parent_url', ''))}</p>")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{name} · optimize report</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def write_report(manifest_path: Path, output: Path | None = None) -> Path:
    from optimize.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    gates_path = manifest_path.parent / "gates.json"
    gates = json.loads(gates_path.read_text()) if gates_path.is_file() else None
    output = output or manifest_path.parent / "report.html"
    atomic_write_text(output, render(manifest, gates))
    return output
