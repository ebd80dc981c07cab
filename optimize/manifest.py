"""The run manifest: everything a run did and produced, in artifacts/<recipe>/<run-id>/.

Files are named relative to the artifacts folder (`store/objects/…`), so a run folder and the
store can be uploaded by one CI job and read from another machine's artifacts folder."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from optimize.pipeline import link_or_copy
from optimize.results import RunResult
from optimize.store import atomic_write_json, atomic_write_text
from optimize.versions import all_library_versions, host_identity

FORMAT = "optimize-manifest/2"


def _artifact_record(artifact, artifacts_dir: Path) -> dict[str, Any] | None:
    if artifact is None:
        return None
    return {
        "hash": artifact.hash,
        "kind": artifact.kind.value,
        "precision": artifact.precision,
        "path": os.path.relpath(artifact.file, artifacts_dir),
        "size_bytes": artifact.size_bytes,
    }


def manifest_dict(result: RunResult, status: str, tracking: dict[str, Any] | None) -> dict[str, Any]:
    loaded = result.recipe
    root = result.artifacts_dir
    return {
        "format": FORMAT,
        "run_id": result.run_id,
        "status": status,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
        "seconds": round(result.seconds, 3),
        "recipe": {
            "name": loaded.recipe.name,
            "path": str(loaded.path) if loaded.path else None,  # None: given as a mapping
            "base_dir": str(loaded.base_dir),
            "text_sha256": hashlib.sha256(loaded.text.encode()).hexdigest(),  # the recipe as written
            "hash": loaded.hash,
            "resolved": loaded.recipe.model_dump(mode="json"),  # every default filled in, to read
            "given": loaded.recipe.model_dump(mode="json", exclude_unset=True),  # re-validates as is
        },
        "host": host_identity(),
        "libraries": all_library_versions(),
        "source": _artifact_record(result.source, root),
        "reference": _artifact_record(result.reference, root),
        "eval_feeds": _artifact_record(result.eval_feeds, root),
        "interface": result.interface,
        "data": {
            role: {
                "fingerprint": fingerprint,
                "source": getattr(loaded.recipe.data, role).model_dump(mode="json"),
            }
            for role, fingerprint in result.data_fingerprints.items()
        },
        "steps": [
            {
                "index": step.index,
                "id": step.step_id,
                "stage": step.stage,
                "params": step.params,
                "cache_key": step.key,
                "input_hash": step.input_hash,
                "output": _artifact_record(step.artifact, root),
                "cached": step.cached,
                "seconds": round(step.seconds, 3),
                "metrics": step.metrics,
                "info": step.info,
                "history": step.history,
            }
            for step in result.steps
        ],
        "original": _original_record(result.original, root),
        "targets": [_target_record(target, root) for target in result.targets],
        "tracking": tracking or {},
    }


def _original_record(original, root: Path) -> dict[str, Any] | None:
    """The model every target is compared with: what entered the first compression step."""
    if original is None:
        return None
    export = original.export
    return {
        "before_step": original.before_step,
        "artifact": _artifact_record(original.artifact, root),
        "export": None
        if export is None
        else {
            "cache_key": export.key,
            "cached": export.cached,
            "seconds": round(export.seconds, 3),
            "metrics": export.metrics,
        },
    }


def _target_record(target, root: Path) -> dict[str, Any]:
    evaluation = target.evaluation
    return {
        "name": target.name,
        "runtime": target.runtime,
        "runtime_version": target.runtime_version,
        "status": target.status,
        "reason": target.reason,
        "engine_key": target.engine_key,
        "engine": _artifact_record(target.engine, root),
        "build_cached": target.build_cached,
        "build": target.build,
        "evaluation_key": target.evaluation_key,
        "evaluation_cached": target.evaluation_cached if evaluation else None,
        "metrics": target.metrics,
        "unmeasured": target.missing_comparisons,
        "notes": target.notes,
        "precision_choice": target.choice or None,
        "latency_samples_ms": evaluation.latency_samples_ms if evaluation else [],
        "round_p50_ms": evaluation.round_p50_ms if evaluation else [],
        "baselines": {
            name: {
                "model": _artifact_record(baseline.model, root),
                "engine_key": baseline.engine_key,
                "engine": _artifact_record(baseline.engine, root),
                "build_cached": baseline.build_cached,
                "build": baseline.build,
                "metrics": baseline.metrics,
                "latency_samples_ms": baseline.evaluation.latency_samples_ms if baseline.evaluation else [],
                "round_p50_ms": baseline.evaluation.round_p50_ms if baseline.evaluation else [],
            }
            for name, baseline in target.baselines.items()
        },
    }


def write_run_folder(result: RunResult, status: str, tracking: dict[str, Any] | None) -> Path:
    """manifest.json, the recipe as run, and links to the final model and every engine."""
    run_dir = result.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", result.recipe.text)
    final = result.final
    link_or_copy(final.file, run_dir / "outputs" / final.file.name)
    for target in result.targets:
        if target.engine is not None:
            for path in target.engine.path.iterdir():
                if path.name != "artifact.json":
                    link_or_copy(path, run_dir / "outputs" / target.name / path.name)
    path = run_dir / "manifest.json"
    atomic_write_json(path, manifest_dict(result, status, tracking))
    atomic_write_text(run_dir.parent / "LATEST", result.run_id + "\n")
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
