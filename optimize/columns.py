"""Every table's columns, once: the terminal (rich), the HTML report and summary.md render the
same column lists with the same plain-text formatting, so they cannot drift apart.

A `Column` is a header, how to read its value from a record, and a format kind; `FORMATS` holds
one formatter per kind. Records are the manifest's shapes (a step or target record of
manifest.json, a gates.json entry, a history line); the renderers only add markup: colour in the
terminal, a class in HTML, an icon in Markdown, and only on `status` cells. Pure: no rich, no HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimize.comparison import BASELINE_TEXT, BASELINES, measured_agreement, metric_name

MISSING = "—"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _mb(value: float) -> str:
    # A tiny model's few kilobytes stay visible rather than rounding to 0.00.
    return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.2f}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# One formatter per kind, each taking a value that is not None. Accuracy, agreement and other
# 0-1 scores are percentages everywhere, with two decimals; drops in them are percentage points.
FORMATS: dict[str, Callable[[Any], str]] = {
    "text": str,
    "status": str,  # text whose first word is a status: the one cell renderers add markup to
    "percent": lambda v: f"{100 * v:.2f}%",
    "points": lambda v: f"{100 * v:+.2f} pt",
    "ms": lambda v: f"{v:.3f}",
    "mb": _mb,
    "count": _count,
    "times": lambda v: f"{v:.2f}×",
    "seconds": lambda v: f"{v:.2f}",
    "bits": lambda v: f"{v:.1f}",
    "rate": lambda v: f"{v:.0f}",
    "limit": lambda v: f"{v:g}",
    "value": _value,  # a measured number (4 significant digits), or text as it is
}
LEFT = ("text", "status")


def format_value(kind: str, value: Any) -> str:
    return MISSING if value is None else FORMATS[kind](value)


@dataclass(frozen=True)
class Column:
    header: str
    read: Callable[[Mapping[str, Any]], Any]  # the value from one record
    kind: str = "text"  # a key of FORMATS
    key: bool = False  # identifies the row: still shown when a note replaces the values

    @property
    def align(self) -> str:
        return "left" if self.kind in LEFT else "right"

    def text(self, record: Mapping[str, Any]) -> str:
        return format_value(self.kind, self.read(record))


def field(header: str, name: str, kind: str = "text", key: bool = False) -> Column:
    """A column showing record[name]."""
    return Column(header, lambda record: record.get(name), kind, key)


def metric(header: str, name: str, kind: str) -> Column:
    """A column showing record["metrics"][name]."""
    return Column(header, lambda record: record["metrics"].get(name), kind)


def rows(columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """Each record as plain-text cells, one per column. A record with "missing" (why its values
    are not there) has its key columns and then that reason alone, spanning the rest: the row is
    shorter than `columns`."""
    table = []
    for record in records:
        if record.get("missing") is not None:
            table.append([c.text(record) for c in columns if c.key] + [str(record["missing"])])
        else:
            table.append([c.text(record) for c in columns])
    return table


STEP_COLUMNS: tuple[Column, ...] = (
    Column("#", lambda s: s["index"] + 1, "value"),
    field("step", "id", key=True),
    field("stage", "stage"),
    Column("source", lambda s: "cache" if s["cached"] else "ran", "status"),
    field("time s", "seconds", "seconds"),
    metric("size MB", "size_mb", "mb"),
    metric("params", "parameters", "count"),
    metric("MACs", "macs", "count"),
    metric("bits/w", "bits_per_weight", "bits"),
    metric("accuracy", "accuracy", "percent"),
    Column("agreement", lambda s: measured_agreement(s["metrics"]), "percent"),
)


def _runtime(record: Mapping[str, Any]) -> str | None:
    return " ".join(filter(None, (record.get("runtime"), record.get("runtime_version")))) or None


def execution(build: Mapping[str, Any] | None) -> str | None:
    """What an engine computes in, as its runtime reported it: 'int8 97% · fp32' (the share of the
    MACs in INT8 kernels, then the precision of the float layers), or 'bf16'."""
    build = build or {}
    share, rest = build.get("int8_mac_share"), build.get("float_precision")
    text = (
        rest if not share else f"int8 {100 * share:.0f}%" + (f" · {rest}" if rest and share < 0.9995 else "")
    )
    if build.get("dla_share") is None:
        return text
    dla = f"DLA {100 * build['dla_share']:.0f}% of layers"  # the rest fell back to the GPU
    return f"{dla} · {text}" if text else dla


def _target_status(target: Mapping[str, Any]) -> str:
    return target["status"] + (" (cache)" if target.get("evaluation_cached") else "")


TARGET_COLUMNS: tuple[Column, ...] = (
    field("target", "name", key=True),
    Column("runtime", _runtime),
    Column("status", _target_status, "status"),
    Column("runs in", lambda t: execution(t.get("build"))),
    metric("accuracy", "accuracy", "percent"),
    Column("agreement", lambda t: measured_agreement(t["metrics"]), "percent"),
    metric("drop vs FP32", metric_name("accuracy_drop", "fp32"), "points"),
    metric("p50 ms", "latency_p50_ms", "ms"),
    metric("p90 ms", "latency_p90_ms", "ms"),
    metric("p99 ms", "latency_p99_ms", "ms"),
    metric("throughput/s", "throughput_sps", "rate"),
    metric("engine MB", "engine_memory_mb", "mb"),
    metric("peak MB", "peak_memory_mb", "mb"),
    metric("size MB", "size_mb", "mb"),
    metric("build s", "build_time_s", "seconds"),
)


def target_notes(targets: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why a target did not run, what its build changed that was measured, and what its build
    reported (e.g. a DLA class whose layers mostly fell back to the GPU)."""
    targets = list(targets)
    lines = [f"{t['name']}: {t['status']} — {t['reason']}" for t in targets if t.get("reason")]
    notes = [(t["name"], note) for t in targets for note in (t.get("build") or {}).get("notes") or []]
    notes += [(t["name"], note) for t in targets for note in t.get("notes") or []]
    return lines + [f"{name}: {note}" for name, note in notes]


# The "against the baselines" table: a record per target that ran and baseline, with the
# target's metrics ("metrics"), the baseline's ("base") and the baseline's name ("name").
def _against(quantity: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: row["metrics"].get(metric_name(quantity, row["name"]))


COMPARISON_COLUMNS: tuple[Column, ...] = (
    field("target", "target", key=True),
    field("baseline", "baseline", key=True),
    Column("it runs in", lambda row: execution(row.get("base_build"))),
    Column("its accuracy", lambda row: row["base"].get("accuracy"), "percent"),
    Column("its p50 ms", lambda row: row["base"].get("latency_p50_ms"), "ms"),
    Column("its size MB", lambda row: row["base"].get("size_mb"), "mb"),
    Column("speedup", _against("speedup"), "times"),
    Column("per-round spread", lambda row: row["metrics"].get(f"speedup_vs_{row['name']}_spread"), "percent"),
    Column("size ratio", _against("size_ratio"), "times"),
    Column("accuracy drop", _against("accuracy_drop"), "points"),
)


def comparison_records(targets: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A record per target that ran and each baseline; where the baseline is not there, why
    ("missing") in place of the numbers."""
    records = []
    for target in targets:
        if target["status"] != "ok":
            continue
        baselines = target.get("baselines") or {}
        for name in BASELINES:
            row = {"target": target["name"], "baseline": BASELINE_TEXT[name], "name": name}
            if name in baselines:
                row.update(
                    metrics=target["metrics"],
                    base=baselines[name]["metrics"],
                    base_build=baselines[name].get("build"),
                )
            else:
                row["missing"] = (target.get("unmeasured") or {}).get(metric_name("speedup", name), "")
            records.append(row)
    return records


# gates.json entries (GateResult as a dict).
GATE_COLUMNS: tuple[Column, ...] = (
    field("gate", "gate", key=True),
    field("target", "target", key=True),
    field("limit", "limit", "limit"),
    field("measured", "measured", "value"),
    Column("result", lambda g: f"{g['status']} {g['detail']}".strip(), "status"),
)

# history.Change as a dict: a metric of the previous build of a device class against this one.
CHANGE_COLUMNS: tuple[Column, ...] = (
    field("metric", "metric", key=True),
    field("previous", "previous", "value"),
    field("now", "current", "value"),
    field("change", "note"),
    Column("verdict", lambda c: "REGRESSION" if c["regression"] else "ok", "status"),
)

# Lines of the build history (history.target_record).
HISTORY_COLUMNS: tuple[Column, ...] = (
    Column("time", lambda r: r["time"][:19].replace("T", " ")),
    field("recipe", "recipe"),
    field("device class", "device_class", key=True),
    field("kind", "kind"),
    field("run", "run_id"),
    Column("runtime", _runtime),
    field("status", "status", "status"),
    metric("accuracy", "accuracy", "percent"),
    metric("p50 ms", "latency_p50_ms", "ms"),
    metric("p90 ms", "latency_p90_ms", "ms"),
    metric("size MB", "size_mb", "mb"),
    Column("model", lambda r: r["model_hash"][:12]),
)

# `optimize targets`: a device class and whether this host can build and run it.
DEVICE_CLASS_COLUMNS: tuple[Column, ...] = (
    field("name", "name", key=True),
    field("runtime", "runtime"),
    field("arch", "arch"),
    field("precisions", "precisions"),
    Column("build here", lambda d: "yes" if d["can_build"] else "no", "status"),
    Column("run here", lambda d: "yes" if d["can_run"] else "no", "status"),
    field("why not", "reason"),
    field("description", "description"),
)
