"""Build history per recipe and device class, and the comparison that flags regressions.

Every `optimize run` and `optimize rebuild` appends one JSON line per target to
artifacts/history/<recipe>/<device-class>.jsonl; the nightly rebuild compares its numbers with
the previous line for the same recipe and device class.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimize.errors import UsageError
from optimize.registry import did_you_mean
from optimize.targets import builtin_device_classes
from optimize.versions import host_hardware, host_identity

HEADLINE = (
    "accuracy",
    "agreement_top1",
    "agreement_cosine",
    "latency_p50_ms",
    "latency_p90_ms",
    "throughput_sps",
    "speedup_vs_fp32",
    "speedup_vs_original",
    "size_mb",
    "engine_memory_mb",
    "peak_memory_mb",
)
TIMINGS = ("latency_p50_ms", "latency_p90_ms", "throughput_sps", "speedup_vs_fp32", "speedup_vs_original")


@dataclass(frozen=True)
class Tolerances:
    accuracy: float = 0.005  # absolute drop allowed
    agreement: float = 0.005  # absolute drop allowed
    latency: float = 0.15  # relative increase allowed
    latency_floor_ms: float = 0.05  # increases smaller than this are timer noise, never regressions
    size: float = 0.05  # relative increase allowed
    memory: float = 0.25  # relative increase allowed
    memory_floor_mb: float = 10.0  # increases smaller than this are allocator noise, never regressions


@dataclass(frozen=True)
class Change:
    metric: str
    previous: float | str | None
    current: float | str | None
    regression: bool
    note: str = ""


def history_file(artifacts_dir: Path, recipe: str, device_class: str) -> Path:
    return artifacts_dir / "history" / recipe / f"{device_class}.jsonl"


def target_record(
    recipe: str, run_id: str, kind: str, target, model_hash: str, source_run: str | None = None
) -> dict[str, Any]:
    metrics = target.metrics
    return {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        "kind": kind,
        "run_id": run_id,
        "source_run_id": source_run or run_id,
        "recipe": recipe,
        "device_class": target.name,
        "runtime": target.runtime,
        "runtime_version": target.runtime_version,
        "model_hash": model_hash,
        "engine_hash": target.engine.hash if target.engine is not None else None,
        "status": target.status,
        "reason": target.reason,
        "host": host_identity()["hostname"],
        "hardware": host_hardware(),
        "metrics": {key: metrics[key] for key in HEADLINE if key in metrics},
    }


def _hardware_text(identity: dict[str, str] | None) -> str:
    if not identity:
        return "an unrecorded host"
    return f"{identity.get('cpu', '?')} ({identity.get('cpu_count', '?')} cores, {identity.get('os', '?')})"


def append(artifacts_dir: Path, record: dict[str, Any]) -> None:
    """Append one line under an exclusive lock, so concurrent runs never interleave lines."""
    path = history_file(artifacts_dir, record["recipe"], record["device_class"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def record_run(artifacts_dir: Path, result) -> None:
    for target in result.targets:
        append(
            artifacts_dir,
            target_record(result.recipe.recipe.name, result.run_id, "run", target, result.final.hash),
        )


def read(
    artifacts_dir: Path, recipe: str | None = None, device_class: str | None = None
) -> list[dict[str, Any]]:
    """Every recorded build, oldest first, optionally of one recipe and one device class. A name
    that nothing was recorded for and that names no built-in device class is a UsageError with
    the closest recorded name."""
    files = list((artifacts_dir / "history").glob("*/*.jsonl"))
    recipes = sorted({path.parent.name for path in files})
    if recipe is not None and files and recipe not in recipes:
        raise UsageError(
            f"--recipe {recipe}: no builds of it in {artifacts_dir / 'history'}{did_you_mean(recipe, recipes)}; "
            f"recipes with builds: {', '.join(recipes)}"
        )
    classes = sorted({*builtin_device_classes(), *(path.stem for path in files)})
    if device_class is not None and device_class not in classes:
        raise UsageError(
            f"--device-class {device_class}: unknown{did_you_mean(device_class, classes)}; "
            f"built-in or with builds: {', '.join(classes)}"
        )
    return _records(artifacts_dir, recipe, device_class)


def _records(artifacts_dir: Path, recipe: str | None, device_class: str | None) -> list[dict[str, Any]]:
    root = artifacts_dir / "history"
    pattern = f"{recipe or '*'}/{device_class or '*'}.jsonl"
    records = []
    for path in sorted(root.glob(pattern)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a killed process
    return sorted(records, key=lambda r: r["time"])


def previous_build(artifacts_dir: Path, recipe: str, device_class: str) -> dict[str, Any] | None:
    """What a rebuild is compared with: the last rebuild (nightly against nightly), or before
    the first rebuild, the last build made by a run."""
    records = _records(artifacts_dir, recipe, device_class)
    rebuilds = [r for r in records if r["kind"] == "rebuild"]
    return (rebuilds or records or [None])[-1]


def compare(previous: dict[str, Any], current: dict[str, Any], tolerances: Tolerances) -> list[Change]:
    """What changed between two builds of the same recipe on the same device class."""
    changes = [
        Change(
            "status",
            previous["status"],
            current["status"],
            regression=previous["status"] == "ok" and current["status"] != "ok",
            note=current.get("reason", "") if current["status"] != "ok" else "",
        )
    ]
    if previous["status"] != "ok" or current["status"] != "ok":
        return changes
    old, new = previous["metrics"], current["metrics"]
    changes += [
        Change(metric, old[metric], None, regression=True, note="measured in the previous build, missing now")
        for metric in HEADLINE
        if metric in old and metric not in new
    ]
    same_host = previous.get("hardware") is not None and previous.get("hardware") == current.get("hardware")

    def drop(metric: str, tolerance: float) -> None:
        if metric in old and metric in new:
            delta = new[metric] - old[metric]
            changes.append(
                Change(
                    metric,
                    old[metric],
                    new[metric],
                    regression=delta < -tolerance,
                    note=f"{delta:+.4f} (tolerance -{tolerance:g})",
                )
            )

    def growth(metric: str, tolerance: float | None, floor: float = 0.0) -> None:
        if old.get(metric) and metric in new:
            ratio = new[metric] / old[metric] - 1
            if tolerance is None:
                changes.append(
                    Change(
                        metric, old[metric], new[metric], regression=False, note=f"{ratio:+.1%} (not checked)"
                    )
                )
                return
            regression = ratio > tolerance and new[metric] - old[metric] > floor
            note = (
                f"{ratio:+.1%} (tolerance +{tolerance:.0%}"
                + (f", ignored below +{floor:g}" if floor else "")
                + ")"
            )
            changes.append(Change(metric, old[metric], new[metric], regression=regression, note=note))

    drop("accuracy", tolerances.accuracy)
    drop("agreement_top1", tolerances.agreement)
    drop("agreement_cosine", tolerances.agreement)
    if same_host:
        growth("latency_p50_ms", tolerances.latency, tolerances.latency_floor_ms)
        growth("latency_p90_ms", None)  # tails swing with machine load; the median is what we hold
        # A ratio of two sub-millisecond p50s moves by tens of percent from one session to the next
        # on a shared machine (docs/measurement.md): shown, never a regression on its own.
        growth("speedup_vs_fp32", None)
        growth("speedup_vs_original", None)
    else:
        note = (
            f"not compared: the previous build was timed on {_hardware_text(previous.get('hardware'))}, "
            f"this one on {_hardware_text(current.get('hardware'))}"
        )
        changes += [
            Change(metric, old[metric], new[metric], regression=False, note=note)
            for metric in TIMINGS
            if metric in old and metric in new
        ]
    growth("size_mb", tolerances.size)
    growth("engine_memory_mb", tolerances.memory, tolerances.memory_floor_mb)
    growth("peak_memory_mb", tolerances.memory, tolerances.memory_floor_mb)
    return changes
