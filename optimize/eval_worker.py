"""Evaluates one engine in a fresh process: `python -m optimize.eval_worker REQUEST.json`.

A separate process gives honest numbers: no torch threads compete for the cores, a runtime that
crashes takes down only this process, and memory is measured on a process that holds nothing but
the runtime and the engine. The worker imports the runtime and NumPy, never torch.

One process, in this order:
  1. import the runtime library and load the (small) timing inputs; resident memory here is the
     floor the engine's memory is measured from;
  2. open the engine and warm it up; `engine_memory_mb` = resident memory now − the floor;
  3. time batch-`min` requests (latency) and batch-`opt` requests (throughput);
     `peak_memory_mb` = the process's resident high-water mark (the kernel's, not sampled);
  4. only when asked (one process per engine in a session): load the eval feeds and score the
     outputs against the labels and the reference outputs. This comes last, so the eval set
     never counts towards the memory numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REQUEST_FORMAT = "optimize-eval-request/2"


def run_in_subprocess(
    request: dict[str, Any], workdir: Path, timeout_s: float | None = None
) -> dict[str, Any]:
    """Run the worker on `request`; returns its result or raises RuntimeError with its error."""
    request_path = workdir / "request.json"
    result_path = workdir / "result.json"
    request_path.write_text(json.dumps({**request, "format": REQUEST_FORMAT, "result": str(result_path)}))
    completed = subprocess.run(
        [sys.executable, "-m", "optimize.eval_worker", str(request_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if completed.returncode != 0 or not result_path.is_file():
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {completed.returncode}"
        raise RuntimeError(f"evaluation process failed: {detail}")
    return json.loads(result_path.read_text())


def _arrays(path: str, prefix: str) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as stored:
        return {key.removeprefix(prefix): stored[key] for key in stored.files if key.startswith(prefix)}


def _evaluate(request: dict[str, Any]) -> dict[str, Any]:
    from pydantic import TypeAdapter

    from optimize.artifacts import Artifact
    from optimize.evaluation import (
        load_outputs,
        peak_resident_mb,
        read_feeds,
        resident_mb,
        score_outputs,
        time_engine,
        time_runs,
    )
    from optimize.model_io import ModelIO
    from optimize.recipe.evaluation import EvaluationSpec
    from optimize.registries import RUNTIMES
    from optimize.targets.device_class import DeviceClass

    device_class = TypeAdapter(DeviceClass).validate_python(request["device_class"])
    settings = EvaluationSpec.model_validate(request["settings"])
    engine = Artifact.open(Path(request["engine_path"]), request["engine_hash"])
    runtime = RUNTIMES.get(device_class.runtime)()
    runtime.import_library()
    latency_inputs = _arrays(request["timing_inputs"], "latency:")
    throughput_inputs = _arrays(request["timing_inputs"], "throughput:")
    floor = resident_mb()
    runner = runtime.open(engine, device_class)
    try:
        time_runs(lambda: runner.timed_run(latency_inputs), settings.warmup_runs, 0, 0.0)
        metrics = {"engine_memory_mb": resident_mb() - floor}
        latency, throughput = time_engine(runner, latency_inputs, throughput_inputs, settings)
        metrics["peak_memory_mb"] = peak_resident_mb()
        device_memory = runner.device_memory_mb()
        if device_memory is not None:
            metrics["device_memory_mb"] = device_memory
        quality = request.get("quality")
        if quality:
            inputs, labels = read_feeds(quality["feeds"])
            references = {name: load_outputs(path) for name, path in quality["references"].items()}
            batch = min(settings.batch_size, device_class.batch.max or settings.batch_size)
            metrics.update(
                score_outputs(
                    runner,
                    ModelIO.from_interface(quality["interface"]),
                    inputs,
                    labels,
                    references,
                    quality["task"],
                    quality["labeled"],
                    batch_size=batch,
                    min_batch=device_class.batch.min,
                )
            )
    finally:
        runner.close()
    return {"metrics": metrics, "latency_samples_ms": latency, "throughput_samples_ms": throughput}


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    if request.get("format") != REQUEST_FORMAT:
        sys.exit(f"unknown request format {request.get('format')!r}")
    try:
        result = _evaluate(request)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    Path(request["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
