"""A self-contained HTML report of one run: tables per stage and per target, gates, and plots
(size and accuracy through the stages, accuracy against latency per target and precision, and
the latency distribution per target), with the images embedded so the file travels alone."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from optimize.comparison import COMPARISON_COLUMNS, comparison_rows, headline
from optimize.store import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2330;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#5b6475;margin-bottom:1.5rem}
table{border-collapse:collapse;margin:1rem 0 2rem;font-size:.9rem;width:100%}
th,td{border-bottom:1px solid #e3e6ec;padding:.35rem .6rem;text-align:right} th{background:#f5f7fa}
td:first-child,th:first-child,td.l,th.l{text-align:left}
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


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return html.escape(str(value))


def _is_number(cell: str) -> bool:
    return (
        cell == "—"
        or cell.replace(",", "")
        .replace(".", "", 1)
        .replace("e", "", 1)
        .replace("+", "")
        .replace("-", "")
        .isdigit()
    )


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """Numbers right-aligned, text left-aligned."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{'' if _is_number(str(cell)) else ' class=l'}>{cell}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
    stage_rows = [
        [
            html.escape(s["id"]),
            html.escape(s["stage"]),
            "cache" if s["cached"] else "ran",
            _fmt(s["seconds"]),
            _fmt(s["metrics"].get("size_mb")),
            _fmt(s["metrics"].get("parameters")),
            _fmt(s["metrics"].get("macs")),
            _fmt(s["metrics"].get("bits_per_weight")),
            _fmt(s["metrics"].get("accuracy"), 4),
            _fmt(s["metrics"].get("agreement_top1", s["metrics"].get("agreement_cosine")), 4),
        ]
        for s in steps
    ]
    status_class = {"ok": "ok", "failed": "bad"}
    target_rows = []
    for t in targets:
        m = t["metrics"]
        target_rows.append(
            [
                html.escape(t["name"]),
                html.escape(f"{t['runtime']} {t['runtime_version']}"),
                f"<span class='{status_class.get(t['status'], 'warn')}'>{html.escape(t['status'])}</span> {html.escape(t['reason'])}",
                _fmt(m.get("accuracy"), 4),
                _fmt(m.get("agreement_top1", m.get("agreement_cosine")), 4),
                _fmt(m.get("latency_p50_ms")),
                _fmt(m.get("latency_p90_ms")),
                _fmt(m.get("latency_p99_ms")),
                _fmt(m.get("throughput_sps")),
                _fmt(m.get("engine_memory_mb")),
                _fmt(m.get("peak_memory_mb")),
                _fmt(m.get("size_mb")),
                _fmt(m.get("build_time_s")),
            ]
        )
    formats = {
        "percent": lambda v: _fmt(v, 4),
        "ms": _fmt,
        "mb": _fmt,
        "times": _fmt,
        "points": lambda v: _fmt(v, 3),
    }
    comparisons = []
    for target, baseline, values in comparison_rows(targets):
        if isinstance(values, str):
            reason = f"<span class='warn'>{html.escape(values)}</span>"
            comparisons.append([html.escape(target), baseline, reason, *[""] * (len(COMPARISON_COLUMNS) - 1)])
        else:
            cells = [formats[kind](v) for (_, kind, _), v in zip(COMPARISON_COLUMNS, values, strict=True)]
            comparisons.append([html.escape(target), baseline, *cells])
    headlines = "".join(f"<li>{html.escape(headline(t))}</li>" for t in targets)
    notes = "".join(
        f"<li>{html.escape(t['name'])}: {html.escape(note)}</li>"
        for t in targets
        for note in t.get("notes", [])
    )
    parts = [
        f"<h1>{name}</h1>",
        f"<div class='meta'>run {html.escape(manifest['run_id'])} · {html.escape(manifest['status'])} · "
        f"{html.escape(manifest['finished'][:19])} · {html.escape(manifest['host']['cpu'])} · "
        f"{len(steps)} steps, {len(targets)} targets in {manifest['seconds']:.1f}s</div>",
        "<h2>Original → final, per target</h2>",
        f"<p class='meta'>Measured side by side in this run: each target's final engine and its baselines "
        f"timed in one session of alternating fresh processes.</p><ul class='headline'>{headlines}</ul>",
        "<h2>Stages</h2>",
        _table(
            [
                "step",
                "stage",
                "source",
                "time s",
                "size MB",
                "params",
                "MACs",
                "bits/w",
                "accuracy",
                "agreement",
            ],
            stage_rows,
        ),
        "<h2>Targets</h2>",
        _table(
            [
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
                "build s",
            ],
            target_rows,
        ),
        "<h2>Against the baselines (same target, same session)</h2>",
        _table(["target", "baseline", *(header for header, _, _ in COMPARISON_COLUMNS)], comparisons),
    ]
    if notes:
        parts += ["<h3>Build notes</h3>", f"<ul>{notes}</ul>"]
    if gates and gates["gates"]:
        gate_rows = [
            [
                html.escape(g["gate"]),
                html.escape(g["target"]),
                _fmt(g["limit"]),
                _fmt(g["measured"], 4),
                f"<span class='{'ok' if g['status'] == 'passed' else 'bad' if g['status'] == 'failed' else 'warn'}'>"
                f"{g['status']}</span> {html.escape(g['detail'])}",
            ]
            for g in gates["gates"]
        ]
        parts += ["<h2>Gates</h2>", _table(["gate", "target", "limit", "measured", "result"], gate_rows)]
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
