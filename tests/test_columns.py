"""One column spec for every output: the terminal tables, the HTML report and summary.md show the
same headers and the same formatted values, from records built by hand (no run)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from rich.console import Console

from optimize.columns import (
    COMPARISON_COLUMNS,
    FORMATS,
    GATE_COLUMNS,
    TARGET_COLUMNS,
    comparison_records,
    execution,
    format_value,
    rows,
    target_notes,
)
from optimize.gates import GateResult, summary_markdown
from optimize.html_report import render
from optimize.tables import comparisons_table, gates_table, targets_table

METRICS = {
    "accuracy": 0.97,
    "agreement_top1": 0.995,
    "accuracy_drop_vs_fp32": 0.004,
    "latency_p50_ms": 0.1364,
    "latency_p90_ms": 0.2,
    "latency_p99_ms": 1.25,
    "throughput_sps": 1646.7,
    "engine_memory_mb": 127.637,
    "peak_memory_mb": 207.156,
    "size_mb": 11.2,
    "build_time_s": 0.0847,
    "speedup_vs_fp32": 2.5,
    "speedup_vs_fp32_spread": 0.031,
    "size_ratio_vs_fp32": 4.0,
}
TARGET = {
    "name": "x86-cpu-onnxruntime",
    "runtime": "onnxruntime",
    "runtime_version": "1.32.0",
    "status": "ok",
    "reason": "",
    "evaluation_cached": False,
    "metrics": METRICS,
    "unmeasured": {"speedup_vs_original": "no compression step"},
    "notes": [],
    "build": {"int8_mac_share": 0.9712, "float_precision": "fp32"},
    "baselines": {
        "fp32": {
            "metrics": {"accuracy": 0.974, "latency_p50_ms": 0.341, "size_mb": 44.8},
            "build": {"float_precision": "fp32"},
        }
    },
}
GATE = GateResult("max_size_mb", "x86-cpu-onnxruntime", 4.0, 11.2, "failed", "size_mb 11.2 not ≤ 4")
EXPECTED_TARGET_ROW = [
    "x86-cpu-onnxruntime",
    "onnxruntime 1.32.0",
    "ok",
    "int8 97% · fp32",
    "97.00%",
    "99.50%",
    "+0.40 pt",
    "0.136",
    "0.200",
    "1.250",
    "1647",
    "127.64",
    "207.16",
    "11.20",
    "0.08",
]


def _terminal(table) -> list[list[str]]:
    """A rich table's cells as plain text (a wide console, so no cell wraps)."""
    console = Console(width=400, record=True, color_system=None)
    console.print(table)
    lines = [line for line in console.export_text().splitlines() if line.startswith(("┃", "│"))]
    return [
        [cell.strip() for cell in line.strip("┃│").split("┃" if line[0] == "┃" else "│")] for line in lines
    ]


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _html(manifest, gates) -> list[list[list[str]]]:
    parser = _Cells()
    parser.feed(render(manifest, gates))
    return parser.tables


def _markdown(text: str) -> list[list[list[str]]]:
    """Each Markdown table's rows (the separator line left out), status icons removed."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            cells = [
                cell.strip().removeprefix("✅ ").removeprefix("❌ ") for cell in line.strip("|").split(" | ")
            ]
            if not all(set(cell) <= set("-:") for cell in cells):
                current.append(cells)
        else:
            current = None
    return tables


@pytest.fixture
def outputs(monkeypatch):
    """(terminal, HTML, Markdown) tables for one run with one target and one gate."""
    import optimize.html_report as html_report

    for plot in ("stage_plot", "pareto_plot", "latency_plot"):
        monkeypatch.setattr(html_report, plot, lambda *args: None)
    terminal = {
        "targets": _terminal(targets_table([TARGET])),
        "comparisons": _terminal(comparisons_table([TARGET])),
        "gates": _terminal(gates_table([GATE])),
    }
    manifest = {
        "recipe": {"name": "demo"},
        "run_id": "r1",
        "status": "ok",
        "finished": "2026-01-01T00:00:00",
        "seconds": 1.0,
        "host": {"cpu": "cpu"},
        "steps": [],
        "targets": [TARGET],
    }
    _, targets, comparisons, gates = _html(manifest, {"gates": [GATE.__dict__]})
    html = {"targets": targets, "comparisons": comparisons, "gates": gates}
    targets, comparisons, gates = _markdown(summary_markdown(manifest, [GATE], {}))
    markdown = {"targets": targets, "comparisons": comparisons, "gates": gates}
    return terminal, html, markdown


def test_the_three_renderers_show_the_same_target_table(outputs):
    headers = [column.header for column in TARGET_COLUMNS]
    assert "drop vs FP32" in headers and "build s" in headers
    for tables in outputs:
        assert tables["targets"] == [headers, EXPECTED_TARGET_ROW]


def test_the_three_renderers_show_the_same_comparisons_and_gates(outputs):
    terminal, html, markdown = outputs
    fp32 = ["x86-cpu-onnxruntime", "the FP32 baseline", "fp32", "97.40%", "0.341", "44.80", "2.50×", "3.10%"]
    assert terminal["comparisons"][2][:8] == fp32
    original = ["x86-cpu-onnxruntime", "the original model", "no compression step"]
    for tables in outputs:
        assert tables["comparisons"][0] == [column.header for column in COMPARISON_COLUMNS]
        assert tables["comparisons"][2] == terminal["comparisons"][2]
        assert [cell for cell in tables["comparisons"][1] if cell] == original
        assert tables["gates"] == [
            [column.header for column in GATE_COLUMNS],
            ["max_size_mb", "x86-cpu-onnxruntime", "4", "11.2", "failed size_mb 11.2 not ≤ 4"],
        ]


def test_an_engine_says_what_it_computes_in():
    assert execution({"int8_mac_share": 0.9712, "float_precision": "fp32"}) == "int8 97% · fp32"
    assert execution({"int8_mac_share": 1.0, "float_precision": "bf16"}) == "int8 100%"
    assert execution({"int8_mac_share": 0.0, "float_precision": "bf16"}) == "bf16"
    assert execution({}) is None and execution(None) is None
    assert execution({"dla_share": 0.25}) == "DLA 25% of layers"  # a TensorRT DLA build
    assert execution({"dla_share": 0.9, "int8_mac_share": 1.0}) == "DLA 90% of layers · int8 100%"


def test_a_build_note_reaches_the_notes_under_the_table():
    note = "DLA: only 1 of 4 layers run on the DLA; the rest fell back to the GPU"
    targets = [
        {
            "name": "orin-dla",
            "status": "ok",
            "build": {"notes": [note]},
            "notes": ["precision auto shipped int8"],
        },
        {"name": "cpu", "status": "ok", "build": None},
    ]
    assert target_notes(targets) == [f"orin-dla: {note}", "orin-dla: precision auto shipped int8"]


def test_one_formatter_per_kind_and_every_column_uses_one():
    assert format_value("percent", 0.97) == "97.00%" and format_value("points", 0.004) == "+0.40 pt"
    assert format_value("count", 11_181_642) == "11.18M" and format_value("mb", 0.004) == "0.004"
    assert format_value("ms", None) == "—"
    assert all(column.kind in FORMATS for column in TARGET_COLUMNS + COMPARISON_COLUMNS + GATE_COLUMNS)


def test_a_missing_baseline_shows_its_reason_in_place_of_the_numbers():
    (original, fp32) = rows(COMPARISON_COLUMNS, comparison_records([TARGET]))
    assert original == ["x86-cpu-onnxruntime", "the original model", "no compression step"]
    assert len(fp32) == len(COMPARISON_COLUMNS)
