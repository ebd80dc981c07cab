"""Every cache key of a run, in one place: small pure functions over what a result depends on.

A key hashes everything that changes its output: the input's content, the resolved parameters,
the fingerprints of the data read, the versions of the libraries called, the model's interface,
the code that computes the result (`code_fingerprint` of the modules that do the work, with all
they import), and for engines and timings the runtime and the host. Two results share a key only
when nothing that could tell them apart differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optimize.hashing import hash_value


def source_key(fingerprint: Mapping[str, Any], libraries: Mapping[str, str]) -> str:
    """The starting model: the source's fingerprint (spec, files, what it reads, its code)."""
    return hash_value({"kind": "source", "fingerprint": dict(fingerprint), "libraries": dict(libraries)})


def interface_key(fingerprint: Mapping[str, Any]) -> str:
    """The model's inputs, outputs and task: all the source's fingerprint pins down."""
    return hash_value({"kind": "interface", "fingerprint": dict(fingerprint)})


def preflight_key(model_hash: str, interface: Mapping[str, Any], data: Mapping[str, str], code: str) -> str:
    """A passed data-against-model check: the model, its declared inputs and outputs, the data."""
    return hash_value(
        {
            "kind": "preflight",
            "model": model_hash,
            "interface": dict(interface),
            "data": dict(data),
            "code": code,
        }
    )


def step_key(
    *,
    input_hash: str,
    stage_type: str,
    params: Mapping[str, Any],
    data_fingerprints: Mapping[str, str],
    library_versions: Mapping[str, str],
    interface: Mapping[str, Any],
    measurement: Mapping[str, Any],
    extra: Mapping[str, Any],
    code: str,
) -> str:
    """A step's output and the numbers recorded for it. `interface` is the model's inputs and
    outputs (an export writes their names and shapes); `measurement` what the step's metrics
    depend on besides the data (the accuracy pass's batch size, the FP32 reference agreement is
    measured against); `extra` what only some stages read (a teacher's hash, the targets'
    activation scheme)."""
    return hash_value(
        {
            "kind": "step",
            "input": input_hash,
            "stage": stage_type,
            "params": dict(params),
            "data": dict(data_fingerprints),
            "libraries": dict(library_versions),
            "interface": dict(interface),
            "measurement": dict(measurement),
            "extra": dict(extra),
            "code": code,
        }
    )


def interface_read_by(produces_onnx: bool, interface: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the model's interface a step's output and metrics depend on: all of it for an
    ONNX model (it carries the names and dynamic axes); for a torch model only the example shapes
    and types (its MACs are counted on them) and the task (which metrics are measured)."""
    if produces_onnx:
        return dict(interface)
    inputs = [{"shape": spec["shape"], "dtype": spec["dtype"]} for spec in interface["inputs"]]
    return {"inputs": inputs, "task": interface["task"]}


def eval_feeds_key(eval_fingerprint: str, input_names: list[str], code: str) -> str:
    """The eval set as arrays, stored under the model's input names."""
    return hash_value({"kind": "eval-feeds", "eval": eval_fingerprint, "inputs": input_names, "code": code})


def reference_outputs_key(
    model_hash: str,
    feeds_hash: str,
    outputs: list[str],
    batch_size: int,
    libraries: Mapping[str, str],
    code: str,
) -> str:
    """A model's outputs (stored under `outputs`' names) on the eval feeds through ONNX Runtime
    on this CPU's default kernels."""
    return hash_value(
        {
            "kind": "reference-outputs",
            "model": model_hash,
            "feeds": feeds_hash,
            "outputs": list(outputs),
            "batch_size": batch_size,
            "libraries": dict(libraries),
            "code": code,
        }
    )


def engine_key(
    model_hash: str, build_settings: Mapping[str, Any], identity: Mapping[str, Any], code: str
) -> str:
    """An engine: the model, the class's build settings, the runtime and hardware identity."""
    return hash_value(
        {
            "kind": "engine",
            "model": model_hash,
            "settings": dict(build_settings),
            "identity": dict(identity),
            "code": code,
        }
    )


def build_check_key(model_hash: str, engine_hash: str, feeds_hash: str, code: str) -> str:
    """A comparison of an engine's outputs with its model file's on the eval feeds."""
    return hash_value(
        {"kind": "build-check", "model": model_hash, "engine": engine_hash, "feeds": feeds_hash, "code": code}
    )


def evaluation_key(
    *,
    engines: Mapping[str, str],
    feeds_hash: str,
    references: Mapping[str, str],
    settings: Mapping[str, Any],
    device_class: Mapping[str, Any],
    host: Mapping[str, str],
    runtime: Mapping[str, Any],
    task: str,
    eval_output: str,
    labeled: bool,
    code: str,
) -> str:
    """A target's evaluation session: every engine timed in it (by role), so a speedup is never
    assembled from two cache entries; the data and references scored against; the timing
    settings, the class as it runs (threads included), the host and the runtime."""
    return hash_value(
        {
            "kind": "evaluation-session",
            "engines": dict(engines),
            "feeds": feeds_hash,
            "references": dict(references),
            "settings": dict(settings),
            "device_class": dict(device_class),
            "host": dict(host),
            "runtime": dict(runtime),
            "task": task,
            "eval_output": eval_output,
            "labeled": labeled,
            "code": code,
        }
    )


def engine_build_settings(device_class) -> dict[str, Any]:
    """The parts of a device class that change the built engine (not its name, description,
    budgets, inference threads, which only matter when the engine runs, or how a bundle of it is
    deployed)."""
    return device_class.model_dump(
        mode="json",
        exclude={"name", "description", "memory_budget_mb", "accepted_precisions", "threads", "deployment"},
    )


def engine_run_settings(device_class) -> dict[str, Any]:
    """The parts of a device class that change how its engines run: the build settings and threads."""
    return {**engine_build_settings(device_class), "threads": device_class.threads}
