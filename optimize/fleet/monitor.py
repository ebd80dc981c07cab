"""`optimize monitor`: a node's long-running prober. It checks the bundle once at start, then every
interval runs the bundle's canary set through the deployed engine (locally through its runtime, or
against a Triton/KServe v2 HTTP endpoint) and exports what it sees with `prometheus_client`:
whether the engine still computes what the build host measured, how fast, and why a probe failed.

`probe_once(state)` is one probe, with no thread or HTTP server; `serve` is the thin loop around it.
A failed probe is counted with its reason and never ends the loop. Like `optimize verify`, this
module loads none of the build libraries.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optimize.errors import UsageError, first_line
from optimize.evaluation import agreement, load_outputs, read_feeds
from optimize.fleet.bundle_format import MANIFEST, Bundle
from optimize.fleet.kserve import ProbeFailure, ServerRunner
from optimize.fleet.node_readings import NodeCollector
from optimize.fleet.verify import (
    VerificationError,
    _check_format,
    _read_canary,
    _run_canary,
    compare_canary,
    file_problems,
    verify_bundle,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from optimize.runtimes.base import Runner, Runtime
    from optimize.targets.device_class import DeviceClass

REASONS = ("engine_missing", "load_error", "inference_error", "timeout", "server_unreachable")
LATENCY_MULTIPLES = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0)  # of the measured p50
MIN_TIMEOUT_S = 5.0

METRICS = (
    "optimize_canary_agreement_ratio",
    "optimize_canary_max_abs_diff",
    "optimize_canary_mean_abs_diff",
    "optimize_canary_accuracy_ratio",
    "optimize_canary_latency_seconds",
    "optimize_engine_info",
    "optimize_probe_failures_total",
    "optimize_probe_last_success_timestamp_seconds",
    "optimize_gate_min_agreement_ratio",
    "optimize_gate_max_latency_p90_seconds",
    "optimize_node_temperature_celsius",
    "optimize_node_memory_pressure_ratio",
)


class _Timed:
    """A runner whose every batch's wall time is kept (the canary latency histogram's samples)."""

    def __init__(self, runner: Runner | ServerRunner):
        self.runner = runner
        self.input_names = runner.input_names
        self.seconds: list[float] = []

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        produced = self.runner.run(feeds)
        self.seconds.append(time.perf_counter() - start)
        return produced


# ---- metrics


def latency_buckets(measured: Mapping[str, float], gates: Mapping[str, float]) -> tuple[float, ...]:
    """Histogram buckets (seconds) around the device class's latency: multiples of the build
    host's measured p50, its p90 and the recipe's latency gates, so the p90 alert compares
    against a bucket edge; Prometheus's defaults where the bundle has none of them."""
    from prometheus_client import Histogram

    def positive(value: float | None) -> bool:
        return bool(value) and math.isfinite(value) and value > 0

    p50 = measured.get("latency_p50_ms")
    bounds = {round(p50 * m / 1000.0, 9) for m in LATENCY_MULTIPLES} if positive(p50) else set()
    for value in (
        measured.get("latency_p90_ms"),
        gates.get("max_latency_p50_ms"),
        gates.get("max_latency_p90_ms"),
    ):
        if positive(value):
            bounds.add(round(value / 1000.0, 9))
    if not bounds:
        return tuple(Histogram.DEFAULT_BUCKETS)
    return (*sorted(bounds), float("inf"))


class AbsentUntilSet:
    """Gauges each absent until given a value: never a 0 that reads as total disagreement before
    the first probe, or as a gate of 0 where the recipe set none."""

    def __init__(self, help_texts: Mapping[str, str]) -> None:
        self.help_texts = help_texts
        self.values: dict[str, float] = {}

    def set(self, name: str, value: float | None) -> None:
        if value is not None:
            self.values[name] = float(value)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for name, text in self.help_texts.items():
            if name in self.values:
                yield GaugeMetricFamily(name, text, value=self.values[name])


CANARY_HELP = {
    "optimize_canary_agreement_ratio": "Share of canary samples whose top-1 matches the reference outputs",
    "optimize_canary_max_abs_diff": "Largest difference of any canary output value from the reference",
    "optimize_canary_mean_abs_diff": "Mean difference of the canary output values from the reference",
    "optimize_canary_accuracy_ratio": "Share of labelled canary samples classified right",
}

# recipe gate → (exported gauge, factor to its base unit, help): the limits the build was held to,
# so the central rules hold each node to its own recipe's budget.
GATE_GAUGES = {
    "min_agreement": (
        "optimize_gate_min_agreement_ratio",
        1.0,
        "The recipe's min_agreement gate on this device class",
    ),
    "max_latency_p90_ms": (
        "optimize_gate_max_latency_p90_seconds",
        0.001,
        "The recipe's max_latency_p90_ms gate on this device class, in seconds",
    ),
}


def gate_gauges(gates: Mapping[str, float]) -> dict[str, float]:
    """The exported gate gauges' values from a bundle's gate limits (only the gates it sets)."""
    return {name: gates[gate] * factor for gate, (name, factor, _) in GATE_GAUGES.items() if gate in gates}


class Metrics:
    """The prober's metrics on their own registry."""

    def __init__(self, bundle: Bundle, runtime_version: str, node: NodeCollector | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self.canary = AbsentUntilSet(CANARY_HELP)
        r.register(self.canary)
        self.gates = AbsentUntilSet({name: text for name, _, text in GATE_GAUGES.values()})
        r.register(self.gates)
        self.latency = Histogram(
            "optimize_canary_latency_seconds",
            "Wall time of one canary batch",
            buckets=latency_buckets(bundle.measured, bundle.gates),
            registry=r,
        )
        self.info = Info("optimize_engine", "The engine this node serves", registry=r)
        self.identify(bundle, runtime_version)
        self.failures = Counter(
            "optimize_probe_failures", "Probes that failed, by reason", ["reason"], registry=r
        )
        for reason in REASONS:
            self.failures.labels(reason=reason)  # every reason present, at 0
        self.last_success = Gauge(
            "optimize_probe_last_success_timestamp_seconds",
            "Unix time of the last probe that ran the canary",
            registry=r,
        )
        if node is not None:
            r.register(node)

    def identify(self, bundle: Bundle, runtime_version: str) -> None:
        self.gates.values = gate_gauges(bundle.gates)
        self.info.info(
            {
                "model": bundle.model.name,
                "version": str(bundle.model.version),
                "device_class": str(bundle.device_class.get("name", "")),
                "engine_key": bundle.engine.engine_key,
                "runtime": bundle.runtime.name,
                "runtime_version": runtime_version,
            }
        )


# ---- the probe


@dataclass
class ProbeState:
    """What one probe needs and what it keeps between probes: the open engine and its file's
    identity, so an engine swapped on disk is re-opened, and bundle.json's, so a release switched
    under the folder (a node's `current` link) is followed."""

    folder: Path
    bundle: Bundle
    device_class: DeviceClass
    metrics: Metrics
    runtime: Runtime | None = None  # None with a server
    server: str | None = None
    timeout: float = 60.0
    runner: Any = None
    engine_stamp: tuple[int, int, int] | None = None
    references: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    manifest_stamp: tuple[int, int, int] | None = None

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        self.runner, self.engine_stamp = None, None


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str | None = None  # one of REASONS when not ok
    detail: str = ""
    agreement_top1: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    accuracy: float | None = None
    batch_seconds: tuple[float, ...] = ()
    problems: tuple[str, ...] = ()  # beyond the bundle's canary thresholds (the probe still ran)


def open_state(
    path: Path,
    *,
    server: str | None = None,
    timeout: float = 60.0,
    node: NodeCollector | None = None,
) -> ProbeState:
    """Check the bundle folder once (all of `optimize verify`, or with a server only bundle.json
    and the files, the engine being the server's) and set up the probe's state. A bundle that
    does not pass is a UsageError: the prober does not start."""
    if not path.is_dir():
        raise UsageError(
            f"no bundle folder at {path} (monitor an unpacked bundle, e.g. a node's current release)"
        )
    try:
        if server is None:
            version = verify_bundle(path).runtime_version
        bundle, device_class = _check_format(path)
        if server is not None:
            problems = file_problems(path, bundle.files)
            if problems:
                raise VerificationError("files", "; ".join(problems))
            version = bundle.runtime.version
    except VerificationError as exc:
        raise UsageError(f"{path} does not verify: {exc}") from None
    runtime = None
    if server is None:
        from optimize.registries import RUNTIMES

        runtime = RUNTIMES.get(bundle.runtime.name)()
    _inputs, labels = _read_canary(read_feeds, path / bundle.canary.inputs)
    references = _read_canary(load_outputs, path / bundle.canary.outputs)
    return ProbeState(
        folder=path,
        bundle=bundle,
        device_class=device_class,
        metrics=Metrics(bundle, version, node),
        runtime=runtime,
        server=server,
        timeout=timeout,
        references=references,
        labels=labels,
        manifest_stamp=_stamp(path / MANIFEST),
    )


def _follow(state: ProbeState) -> None:
    """Re-read the bundle when its bundle.json changed since the last probe (the rollout switched
    the `current` link to another release): the engine, canary and identity are the new
    release's. A new release that does not check out is a load error until it is fixed."""
    manifest = state.folder / MANIFEST
    try:
        stamp = _stamp(manifest)
    except FileNotFoundError:
        state.close()
        raise ProbeFailure("engine_missing", f"no {MANIFEST} in {state.folder}") from None
    if stamp == state.manifest_stamp:
        return
    state.close()
    try:
        bundle, device_class = _check_format(state.folder)
        problems = file_problems(state.folder, bundle.files)
        if problems:
            raise VerificationError("files", "; ".join(problems))
        _inputs, labels = _read_canary(read_feeds, state.folder / bundle.canary.inputs)
        references = _read_canary(load_outputs, state.folder / bundle.canary.outputs)
    except VerificationError as exc:
        raise ProbeFailure("load_error", f"the bundle changed and does not check out: {exc}") from None
    version = bundle.runtime.version
    if state.server is None:
        from optimize.registries import RUNTIMES

        try:
            runtime = RUNTIMES.get(bundle.runtime.name)()
        except Exception as exc:  # a runtime this install does not know
            raise ProbeFailure("load_error", f"the bundle changed: {first_line(exc)}") from None
        state.runtime, version = runtime, runtime.version()
    state.bundle, state.device_class, state.references, state.labels = (
        bundle,
        device_class,
        references,
        labels,
    )
    state.metrics.identify(bundle, version)
    state.manifest_stamp = stamp


def _stamp(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _engine(state: ProbeState) -> Any:
    """The runner for this probe: the server, or the local engine, re-opened when its file
    changed (inode, size or mtime) since it was opened. Raises ProbeFailure."""
    if state.server is not None:
        if state.runner is None:
            state.runner = ServerRunner(
                state.server,
                state.bundle.model.name,
                [tensor.name for tensor in state.bundle.model.inputs],
                list(state.bundle.model.outputs),
                state.timeout,
            )
        return state.runner
    engine = state.folder / state.bundle.engine.file
    try:
        stamp = _stamp(engine)
    except FileNotFoundError:
        state.close()
        raise ProbeFailure("engine_missing", f"{state.bundle.engine.file} is missing") from None
    if state.runner is None or stamp != state.engine_stamp:
        state.close()
        try:
            state.runner = state.runtime.open_file(engine, state.device_class, state.bundle.engine.meta)
        except Exception as exc:  # whatever the runtime raises: the engine does not load
            raise ProbeFailure(
                "load_error",
                f"{state.bundle.runtime.name} cannot open {state.bundle.engine.file}: {first_line(exc)}",
            ) from None
        state.engine_stamp = stamp
    return state.runner


def probe_once(state: ProbeState, now: Callable[[], float] = time.time) -> ProbeResult:
    """One probe: the canary set through the engine, compared with the reference outputs; the
    metrics updated. Never raises for a failed probe: the result names the reason."""
    metrics = state.metrics
    try:
        _follow(state)
        timed = _Timed(_engine(state))
        started = time.perf_counter()
        try:
            outputs, _samples = _run_canary(timed, state.folder, state.bundle, state.device_class)
        except VerificationError as exc:
            cause = exc.__cause__
            if isinstance(cause, ProbeFailure):
                raise cause from None
            raise ProbeFailure("inference_error", str(exc)) from None
        elapsed = time.perf_counter() - started
        if elapsed > state.timeout:
            raise ProbeFailure("timeout", f"the canary took {elapsed:.3g} s (limit {state.timeout:g} s)")
    except ProbeFailure as failure:
        metrics.failures.labels(reason=failure.reason).inc()
        return ProbeResult(False, failure.reason, str(failure))

    bundle = state.bundle
    compared = compare_canary(outputs, state.references, bundle.model.eval_output, bundle.canary)
    means = [
        agreement(state.references[name], values, "")["mean_abs_diff"]
        for name, values in outputs.items()
        if name in state.references and state.references[name].shape == values.shape
    ]
    mean = float(np.mean(means)) if means else None
    top1 = compared.agreement_top1
    if top1 is None and bundle.model.task == "classification":
        reference = state.references.get(bundle.model.eval_output)
        produced = outputs.get(bundle.model.eval_output)
        if reference is not None and produced is not None and reference.shape == produced.shape:
            top1 = agreement(reference, produced, "classification")["agreement_top1"]
    accuracy = None
    scored = outputs.get(bundle.model.eval_output)
    labels = state.labels
    if (
        bundle.model.task == "classification"
        and scored is not None
        and labels is not None
        and labels.ndim == 1
        and len(labels) == len(scored)
    ):
        accuracy = float((scored.reshape(len(scored), -1).argmax(1) == labels).mean())

    metrics.canary.set("optimize_canary_agreement_ratio", top1)
    metrics.canary.set("optimize_canary_max_abs_diff", compared.max_abs_diff)
    metrics.canary.set("optimize_canary_mean_abs_diff", mean)
    metrics.canary.set("optimize_canary_accuracy_ratio", accuracy)
    for seconds in timed.seconds:
        metrics.latency.observe(seconds)
    metrics.last_success.set(now())
    return ProbeResult(
        True,
        agreement_top1=top1,
        max_abs_diff=compared.max_abs_diff,
        mean_abs_diff=mean,
        accuracy=accuracy,
        batch_seconds=tuple(timed.seconds),
        problems=tuple(compared.problems),
    )


# ---- the loop


def bind(state: ProbeState, port: int, address: str) -> None:
    """Serve the state's registry on http://address:port/metrics (a thread of prometheus_client)."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=address, registry=state.metrics.registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {address}:{port}: {exc.strerror or exc}") from None


def serve(
    state: ProbeState,
    interval: float,
    on_probe: Callable[[ProbeResult], None] | None = None,
    probes: int | None = None,
) -> None:
    """Probe every interval (from the start of one probe to the next) until interrupted, or for
    `probes` probes."""
    done = 0
    while probes is None or done < probes:
        started = time.monotonic()
        result = probe_once(state)
        if on_probe is not None:
            on_probe(result)
        done += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def say_missing(node: NodeCollector) -> None:
    """Once, on stderr: what this host lacks, so its metrics are absent."""
    for what in node.missing:
        print(f"note: {what}: not exported on this host", file=sys.stderr, flush=True)
