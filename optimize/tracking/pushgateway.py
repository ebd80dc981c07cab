"""`--pushgateway URL`: a finished run's (or rebuild's) per-target numbers pushed to a Prometheus
Pushgateway, so nightly build results sit on the same dashboards as the fleet's metrics.

One group per target — job="optimize", recipe=<name>, device_class=<class> — pushed with PUT, so a
rebuild of one class replaces only that class's group. Each sample carries run_id, kind (run |
rebuild) and precision. Names follow Prometheus conventions (base units, prefix optimize_build_):

    optimize_build_accuracy_ratio                       top-1 accuracy on the eval set
    optimize_build_agreement_ratio                      top-1 agreement with the FP32 reference
    optimize_build_latency_p50_seconds, _p90_, _p99_    single-sample latency percentiles
    optimize_build_throughput_samples_per_second
    optimize_build_size_bytes                           the engine's size
    optimize_build_speedup_ratio{baseline=fp32|original}
    optimize_build_gates_passed                         1/0: the run's gates for the target (a
                                                        rebuild: 0 when it found a regression)
    optimize_build_status{status=ok|built|skipped|failed}  1 for the build's status, 0 for the others

A metric the build did not measure is left out, never pushed as 0. A push that fails never fails
the run: it becomes one warning; the run's own records are already written."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

JOB = "optimize"
PREFIX = "optimize_build_"
STATUSES = ("ok", "built", "skipped", "failed")
PUSH_TIMEOUT_S = 10.0

# (metric in the target's metrics, name without the prefix, factor to base units, extra labels, help)
_GAUGES: tuple[tuple[str, str, float, dict[str, str], str], ...] = (
    ("accuracy", "accuracy_ratio", 1.0, {}, "top-1 accuracy of the engine on the eval set"),
    ("agreement_top1", "agreement_ratio", 1.0, {}, "top-1 agreement with the FP32 reference"),
    ("latency_p50_ms", "latency_p50_seconds", 1e-3, {}, "median single-sample latency"),
    ("latency_p90_ms", "latency_p90_seconds", 1e-3, {}, "90th percentile single-sample latency"),
    ("latency_p99_ms", "latency_p99_seconds", 1e-3, {}, "99th percentile single-sample latency"),
    ("throughput_sps", "throughput_samples_per_second", 1.0, {}, "batched throughput"),
    ("size_mb", "size_bytes", 1e6, {}, "size of the engine"),
    ("speedup_vs_fp32", "speedup_ratio", 1.0, {"baseline": "fp32"}, "p50 speedup over a baseline"),
    ("speedup_vs_original", "speedup_ratio", 1.0, {"baseline": "original"}, "p50 speedup over a baseline"),
)


@dataclass(frozen=True)
class Sample:
    name: str
    help: str
    labels: dict[str, str]
    value: float


def target_record(recipe: str, run_id: str, kind: str, target, gates_passed: bool | None) -> dict[str, Any]:
    """What is pushed about one target (a TargetResult), as plain data."""
    return {
        "recipe": recipe,
        "device_class": target.name,
        "run_id": run_id,
        "kind": kind,
        "status": target.status,
        "precision": target.engine.precision if target.engine is not None else "",
        "metrics": dict(target.metrics),
        "gates_passed": gates_passed,
    }


def grouping_key(record: dict[str, Any]) -> dict[str, str]:
    """The group besides job="optimize": one per recipe and device class."""
    return {"recipe": record["recipe"], "device_class": record["device_class"]}


def metric_samples(record: dict[str, Any]) -> list[Sample]:
    """A target record → its samples, in base units; what was not measured is left out."""
    labels = {"run_id": record["run_id"], "kind": record["kind"], "precision": record.get("precision") or ""}
    metrics = record.get("metrics") or {}
    samples = [
        Sample(PREFIX + name, text, {**labels, **extra}, float(metrics[key]) * factor)
        for key, name, factor, extra, text in _GAUGES
        if isinstance(metrics.get(key), (int, float)) and not isinstance(metrics.get(key), bool)
    ]
    if record.get("gates_passed") is not None:
        samples.append(
            Sample(
                PREFIX + "gates_passed",
                "1 when the target passed its gates, else 0",
                labels,
                1.0 if record["gates_passed"] else 0.0,
            )
        )
    samples += [
        Sample(
            PREFIX + "status",
            "1 for the build's status, 0 for the others",
            {**labels, "status": status},
            1.0 if record["status"] == status else 0.0,
        )
        for status in STATUSES
    ]
    return samples


def _registry(samples: list[Sample]):
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    class _Samples:
        def collect(self):
            families: dict[str, GaugeMetricFamily] = {}
            for sample in samples:
                family = families.get(sample.name)
                if family is None:
                    family = families[sample.name] = GaugeMetricFamily(
                        sample.name, sample.help, labels=sorted(sample.labels)
                    )
                family.add_metric([sample.labels[key] for key in sorted(sample.labels)], sample.value)
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Samples())
    return registry


def push(url: str, records: Iterable[dict[str, Any]], records_at, warn: Callable[[str], None]) -> bool:
    """PUT each target's group; on the first failure, one warning (naming where the run's records
    are: records_at) and no further pushes. True when every group was pushed."""
    from prometheus_client import push_to_gateway

    for record in records:
        try:
            push_to_gateway(
                url,
                job=JOB,
                registry=_registry(metric_samples(record)),
                grouping_key=grouping_key(record),
                timeout=PUSH_TIMEOUT_S,
            )
        except Exception as exc:  # any failure to push leaves the finished run as it is
            reason = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
            warn(f"pushgateway {url} unreachable: {reason}; the run's records are complete in {records_at}")
            return False
    return True
