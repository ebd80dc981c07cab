"""Evaluates one engine in a fresh process: `python -m optimize.eval_worker REQUEST.json`.

A separate process gives honest numbers: peak memory is the engine's own (not what torch and
earlier stages left behind), no torch threads compete for the cores, and a runtime that crashes
takes down only this process. The worker imports the runtime and NumPy, never torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REQUEST_FORMAT = "optimize-eval-request/1"


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


def _evaluate(request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from pydantic import TypeAdapter

    from optimize.artifacts import Artifact
    from optimize.evaluation import MemorySampler, evaluate_runner
    from optimize.recipe.schema import EvaluationSpec
    from optimize.runtimes import RUNTIMES
    from optimize.targets.device_class import DeviceClass

    device_class = TypeAdapter(DeviceClass).validate_python(request["device_class"])
    settings = EvaluationSpec.model_validate(request["settings"])
    engine = Artifact.open(Path(request["engine_path"]), request["engine_hash"])
    with np.load(request["feeds"], allow_pickle=False) as feeds:
        inputs = {key.removeprefix("input:"): feeds[key] for key in feeds.files if key.startswith("input:")}
        labels = feeds["labels"]
    reference = np.load(request["reference"], allow_pickle=False) if request.get("reference") else None
    runtime = RUNTIMES.get(device_class.runtime)()
    with MemorySampler() as memory:
        runner = runtime.open(engine, device_class)
        try:
            metrics, samples = evaluate_runner(
                runner,
                inputs,
                labels,
                reference,
                settings,
                request["task"],
                request["labeled"],
                throughput_batch=device_class.batch.opt,
                max_batch=device_class.batch.max,
                latency_batch=device_class.batch.min,
                latency_only=request.get("latency_only", False),
            )
        finally:
            runner.close()
    if not request.get("latency_only"):
        metrics["peak_memory_mb"] = memory.peak_mb
    return {"metrics": metrics, "latency_samples_ms": samples}


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
