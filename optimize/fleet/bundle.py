"""`optimize bundle`: one ok target of a run as a versioned deployment bundle (layout in
optimize.fleet.bundle_format): the engine in a Triton model repository, bundle.json, a canary
set with reference outputs, and the Kubernetes manifests. Written under a temporary name and
renamed, so a bundle folder or archive that exists is complete."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from optimize.errors import UsageError
from optimize.fleet.bundle_format import (
    CANARY_INPUTS,
    CANARY_OUTPUTS,
    MANIFEST,
    REPOSITORY,
    Bundle,
    CanaryRecord,
    EngineRecord,
    ModelIdentity,
    Preprocessing,
    RuntimeIdentity,
    TensorSpec,
    folder_name,
)
from optimize.gates import defaults_for, limits_for
from optimize.hashing import hash_file
from optimize.registry import did_you_mean

CANARY_SAMPLES = 32
MEASURED = (
    "accuracy",
    "agreement_top1",
    "cosine_mean",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "throughput_per_s",
    "speedup_vs_fp32",
    "speedup_vs_original",
    "size_mb",
)
# A node's CPU may pick other kernels than the build host's (e.g. without VNNI): its outputs of
# the same engine may differ in the last bits, and a top-1 decision near a tie may flip.
ENGINE_TOLERANCE = {"min_agreement_top1": 0.95, "relative_abs_diff": 0.05}


def model_version(run_id: str) -> int:
    """Triton's numeric version folder from a run id (YYYYMMDD-hhmmss-xxxxxx): later runs are higher."""
    date, time_of_day, _ = run_id.split("-", 2)
    return int(date + time_of_day)


def ok_target(manifest: dict[str, Any], device_class: str) -> dict[str, Any]:
    """The run's record of the target, which must have been built and evaluated."""
    targets = {target["name"]: target for target in manifest["targets"]}
    if device_class not in targets:
        raise UsageError(
            f"run {manifest['run_id']} has no target '{device_class}'{did_you_mean(device_class, targets)}; "
            f"its targets: {', '.join(targets) or 'none'}"
        )
    target = targets[device_class]
    if target["status"] != "ok":
        raise UsageError(
            f"target '{device_class}' of run {manifest['run_id']} is {target['status']}"
            f"{': ' + target['reason'] if target.get('reason') else ''}; only an ok target can be bundled"
        )
    return target


def graph_tensors(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file: names, NumPy dtypes and shapes (-1 where an axis varies)."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim]
        return TensorSpec(
            name=value.name, dtype=helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, shape=shape
        )

    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def canary_tolerance(reference: str, outputs: dict[str, Any], target: dict[str, Any]) -> dict[str, float]:
    """What a node's run of the canary set must reach. Against the engine's own outputs: the
    same within kernel differences. Against its ONNX model (classes this host cannot run): what
    the run measured between engine and FP32, with the same slack."""
    import numpy as np

    scale = max(float(np.abs(values).max(initial=0.0)) for values in outputs.values())
    relative = ENGINE_TOLERANCE["relative_abs_diff"]
    if reference == "engine":
        return {
            "min_agreement_top1": ENGINE_TOLERANCE["min_agreement_top1"],
            "max_abs_diff": max(relative * scale, 1e-4),
        }
    metrics = target["metrics"]
    measured_agreement = metrics.get("agreement_top1", 1.0)
    return {
        "min_agreement_top1": max(0.0, measured_agreement - (1 - ENGINE_TOLERANCE["min_agreement_top1"])),
        "max_abs_diff": max(2 * metrics.get("max_abs_diff", 0.0), relative * scale, 1e-4),
    }


def write_bundle(manifest_path: Path, device_class_name: str, out_dir: Path) -> Path:
    """The bundle folder of one target (and its .tar.gz beside it); both must not exist yet."""
    from optimize.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    target = ok_target(manifest, device_class_name)
    version = model_version(manifest["run_id"])
    name = manifest["recipe"]["name"]
    final = out_dir / folder_name(name, version, device_class_name)
    archive = final.with_name(final.name + ".tar.gz")
    for path in (final, archive):
        if path.exists():
            raise UsageError(f"{path} exists; remove it or give another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_dir))
    try:
        _fill(staging, manifest, manifest_path.parent.parent.parent, target, name, version)
        _archive(staging, archive, final.name)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _fill(folder: Path, manifest, artifacts_dir: Path, target, name: str, version: int) -> None:
    from optimize.artifacts import Artifact
    from optimize.fleet.k8s import write_manifests
    from optimize.fleet.triton import render_config
    from optimize.recipe.schema import Recipe
    from optimize.registries import RUNTIMES
    from optimize.targets import device_classes_for

    # as the recipe set it (a dump with every default filled in sets options refused outside their precision)
    recipe = Recipe.model_validate(
        manifest["recipe"]["given"], context={"base_dir": Path(manifest["recipe"]["base_dir"])}
    )
    device_class = device_classes_for(recipe.device_classes)[target["name"]]
    runtime = RUNTIMES.get(device_class.runtime)()
    engine = Artifact.open((artifacts_dir / target["engine"]["path"]).parent, target["engine"]["hash"])
    reference_model = artifacts_dir / manifest["reference"]["path"]
    inputs, outputs = graph_tensors(reference_model)
    batched = all(spec.shape and spec.shape[0] == -1 for spec in inputs)
    max_batch = device_class.batch.max if batched else 0

    version_dir = folder / REPOSITORY / name / str(version)
    version_dir.mkdir(parents=True)
    for engine_file, triton_file in runtime.triton.files.items():
        shutil.copyfile(engine.path / engine_file, version_dir / triton_file)
    capability = getattr(device_class.settings, "compute_capability", None)
    (folder / REPOSITORY / name / "config.pbtxt").write_text(
        render_config(
            name, runtime.triton, inputs, outputs, max_batch, device_class.deployment.gpu, capability
        )
    )
    reference, canary_outputs = _write_canary(
        folder, manifest, artifacts_dir, runtime, device_class, engine, [o.name for o in outputs]
    )
    write_manifests(folder, device_class, name, version)

    files = {
        path.relative_to(folder).as_posix(): hash_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    engine_file = f"{REPOSITORY}/{name}/{version}/{next(iter(runtime.triton.files.values()))}"
    interface = recipe.model
    bundle = Bundle(
        model=ModelIdentity(
            name=name,
            version=version,
            run_id=manifest["run_id"],
            recipe_hash=manifest["recipe"]["hash"],
            recipe_sha256=manifest["recipe"]["text_sha256"],
            mlflow_run_id=(manifest.get("tracking") or {}).get("target_runs", {}).get(target["name"]),
            task=interface.task,
            inputs=inputs,
            outputs=[o.name for o in outputs],
            eval_output=interface.eval_output or outputs[0].name,
        ),
        device_class=device_class.model_dump(mode="json"),
        runtime=RuntimeIdentity(
            name=runtime.name,
            version=target["runtime_version"],
            compute_capability=capability,
            jetpack=getattr(device_class.settings, "jetpack", None),
        ),
        engine=EngineRecord(
            file=engine_file,
            engine_key=target["engine_key"],
            precision=target["engine"]["precision"],
            max_batch_size=max_batch,
            meta=engine.meta,
        ),
        files=files,
        preprocessing=_preprocessing(recipe, inputs),
        measured={key: float(target["metrics"][key]) for key in MEASURED if key in target["metrics"]},
        gates={**defaults_for(recipe.gates, target["name"]), **limits_for(recipe.gates, target["name"])},
        canary=CanaryRecord(
            samples=len(next(iter(canary_outputs.values()))),
            reference=reference,
            **canary_tolerance(reference, canary_outputs, target),
        ),
    )
    (folder / MANIFEST).write_text(bundle.model_dump_json(indent=2) + "\n")


def _write_canary(folder: Path, manifest, artifacts_dir: Path, runtime, device_class, engine, output_names):
    """The first eval samples and the outputs a node must reproduce: the engine's own where this
    host runs the class, else its ONNX model's through ONNX Runtime."""
    import numpy as np

    from optimize.evaluation import read_feeds, run_batched

    if not manifest.get("eval_feeds"):
        raise UsageError(
            f"run {manifest['run_id']} has no eval data; a bundle's canary set is drawn from data.eval"
        )
    inputs, labels = read_feeds(artifacts_dir / manifest["eval_feeds"]["path"])
    count = min(CANARY_SAMPLES, len(labels))
    inputs = {name: np.ascontiguousarray(values[:count]) for name, values in inputs.items()}
    if runtime.availability(device_class).can_run:
        reference, runner = "engine", runtime.open(engine, device_class)
    else:
        from optimize.runtimes.onnxruntime import OnnxRuntimeRunner, OnnxRuntimeSettings

        model = manifest["reference"] if engine.precision == "fp32" else manifest["steps"][-1]["output"]
        reference = "model"
        runner = OnnxRuntimeRunner(
            artifacts_dir / model["path"], threads=None, settings=OnnxRuntimeSettings()
        )
    try:
        produced = run_batched(runner, inputs, device_class.batch.min, min_batch=device_class.batch.min)
    finally:
        runner.close()
    outputs = dict(zip(output_names, produced, strict=True))
    (folder / "canary").mkdir()
    np.savez(
        folder / CANARY_INPUTS,
        labels=labels[:count],
        **{f"input:{name}": value for name, value in inputs.items()},
    )
    np.savez(folder / CANARY_OUTPUTS, **outputs)
    return reference, outputs


def _preprocessing(recipe, inputs: list[TensorSpec]) -> Preprocessing:
    """What a client must do to raw inputs, as the eval data source did it."""
    spec = recipe.data.eval
    image = len(inputs) == 1 and len(inputs[0].shape) == 4
    normalisation = spec.normalisation() if spec is not None else None
    return Preprocessing(
        layout="NCHW" if image else None,
        mean=list(normalisation[0]) if normalisation else None,
        std=list(normalisation[1]) if normalisation else None,
        data=spec.model_dump(mode="json", exclude_unset=True) if spec is not None else {},
    )


def _archive(folder: Path, archive: Path, top: str) -> None:
    """The bundle as .tar.gz with its folder at the top, written under a temporary name."""
    partial = archive.with_name(f".{archive.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=top)
    partial.rename(archive)
