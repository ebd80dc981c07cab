"""Runs a recipe: the start model, each step in order (from the cache when nothing changed),
then a build and an evaluation per target, and writes the run's manifest.

Every unit of work (a step, an engine build, an evaluation) is looked up in the store under a
key that hashes everything its result depends on; only misses do work.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.console import Progress
from optimize.data.base import DataContext
from optimize.data.provider import ROLES, DataProvider
from optimize.errors import OptimizeError, RecipeError, StageError, TargetError
from optimize.hashing import hash_value, stage_cache_key
from optimize.models import open_source
from optimize.recipe.loader import LoadedRecipe
from optimize.runtimes import RUNTIMES
from optimize.stages import STAGES
from optimize.stages.base import StageContext
from optimize.store import ArtifactStore
from optimize.targets import device_classes_for
from optimize.versions import host_identity, library_versions

MEASURE_VERSION = 2  # bump when measure.py changes what it records, to refresh cached metrics


@dataclass
class RunOptions:
    artifacts_dir: Path
    no_cache: bool = False
    only_targets: list[str] | None = None
    require_targets: bool = False
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))


@dataclass
class StepResult:
    index: int
    step_id: str
    stage: str
    params: dict[str, Any]
    key: str
    input_hash: str
    artifact: Artifact
    cached: bool
    seconds: float
    metrics: dict[str, float]
    info: dict[str, Any]
    history: dict[str, list[float]]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    latency_samples_ms: list[float]
    cached: bool
    key: str


@dataclass
class TargetResult:
    name: str
    runtime: str
    status: str  # ok | built (cannot run here) | skipped (cannot build here) | failed
    reason: str = ""
    runtime_version: str = ""
    engine: Artifact | None = None
    engine_key: str = ""
    build_cached: bool = False
    build: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    baseline: Evaluation | None = None  # the FP32 model on the same target

    @property
    def metrics(self) -> dict[str, float]:
        metrics = dict(self.evaluation.metrics) if self.evaluation else {}
        if self.engine is not None:
            metrics["size_mb"] = self.engine.size_bytes / 1_000_000
            metrics["build_time_s"] = float(self.build.get("build_time_s", 0.0))
        if self.evaluation and self.baseline:
            base = self.baseline.metrics
            if "accuracy" in base and "accuracy" in metrics:
                metrics["accuracy_drop"] = base["accuracy"] - metrics["accuracy"]
            if base.get("latency_p50_ms") and metrics.get("latency_p50_ms"):
                metrics["speedup"] = base["latency_p50_ms"] / metrics["latency_p50_ms"]
        return metrics


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    recipe: LoadedRecipe
    source: Artifact
    steps: list[StepResult]
    targets: list[TargetResult]
    seconds: float
    reference: Artifact | None

    @property
    def final(self) -> Artifact:
        return self.steps[-1].artifact if self.steps else self.source


def new_run_id() -> str:
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def per_process_timing(settings):
    """Each latency process times its share of the recipe's minimum runs and seconds."""
    import math

    count = settings.latency_processes
    return settings.model_copy(
        update={"min_runs": math.ceil(settings.min_runs / count), "min_time_s": settings.min_time_s / count}
    )


def engine_cache_key(model_hash: str, device_class_settings: dict[str, Any], identity: dict[str, Any]) -> str:
    """An engine depends on the model, the class's build settings and the runtime + hardware."""
    return hash_value(
        {"kind": "engine", "model": model_hash, "settings": device_class_settings, "identity": identity}
    )


def build_settings(device_class) -> dict[str, Any]:
    """The parts of a device class that change the built engine (not its name, description,
    budgets or inference threads, which only matter when the engine runs)."""
    return device_class.model_dump(
        mode="json", exclude={"name", "description", "memory_budget_mb", "accepted_precisions", "threads"}
    )


class Pipeline:
    def __init__(self, loaded: LoadedRecipe, options: RunOptions, tracker=None):
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.options = options
        self.progress = options.progress
        self.store = ArtifactStore(options.artifacts_dir / "store")
        self.source = open_source(self.recipe.model, loaded.base_dir)
        self.data = DataProvider(
            {role: getattr(self.recipe.data, role) for role in ROLES},
            DataContext(loaded.base_dir, self.source),
        )
        self.tracker = tracker
        self.current = "start-up"  # what is running, for an interrupt message
        self._reference_outputs: dict[str, Any] = {}

    # -- the cache ------------------------------------------------------------------------
    def _cached(
        self, key: str, label: str, compute: Callable[[Path], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """The entry under key, computing it (into a private work folder) on a miss."""
        with self.store.lock(
            key, on_wait=lambda: self.progress.note(f"  waiting: another run is computing {label}")
        ):
            if not self.options.no_cache:
                entry = self.store.get_entry(key)
                if entry is not None:
                    return entry, True
            workdir = self.store.new_workdir()
            try:
                record = compute(workdir)
                artifacts = {}
                if any(workdir.iterdir()):
                    artifacts["model"] = self.store.put_tree(workdir)
                else:
                    workdir.rmdir()
                return self.store.put_entry(key, {"label": label, "artifacts": artifacts, **record}), False
            finally:
                if workdir.exists():
                    shutil.rmtree(workdir, ignore_errors=True)

    def _artifact(self, entry: dict[str, Any]) -> Artifact:
        digest = entry["artifacts"]["model"]
        return Artifact.open(self.store.object_path(digest), digest)

    # -- the start model ----------------------------------------------------------------------
    def _source_artifact(self) -> Artifact:
        self.current = "loading the model source"
        kind = self.source.artifact_kind
        key = hash_value(
            {
                "kind": "source",
                "fingerprint": self.source.fingerprint(),
                "libraries": library_versions(["torch", "onnx"]),
            }
        )

        def compute(workdir: Path) -> dict[str, Any]:
            if kind == ArtifactKind.ONNX:
                shutil.copyfile(self.source.path, workdir / "model.onnx")
                inputs = [spec.model_dump(mode="json") for spec in self.source.inputs()]
                write_artifact_meta(
                    workdir,
                    ArtifactKind.ONNX,
                    "model.onnx",
                    precision="fp32",
                    inputs=inputs,
                    outputs=self.source.output_names(),
                    fp32_reference=True,
                )
            else:
                from optimize.torch_io import save_module

                save_module(self.source.pretrained(), workdir / "model.pt")
                write_artifact_meta(workdir, ArtifactKind.TORCH, "model.pt")
            return {}

        try:
            entry, _ = self._cached(key, f"source {self.recipe.model.source}", compute)
        except OptimizeError:
            raise
        except Exception as exc:
            raise StageError(
                "source", f"cannot build the model from '{self.recipe.model.source}': {exc}"
            ) from exc
        return self._artifact(entry)

    # -- checks before any work ---------------------------------------------------------------
    def _checked_preflight(self, source: Artifact) -> None:
        """The preflight once per model and data: a passed check is remembered in the store."""
        roles = [r for r in ("train", "eval") if self.data.has(r)]
        key = hash_value(
            {
                "kind": "preflight",
                "model": source.hash,
                "task": self.recipe.model.task,
                "data": {role: self.data.fingerprint(role) for role in roles},
            }
        )
        self._cached(key, "data and model check", lambda workdir: self._preflight(source) or {})

    def _preflight(self, source: Artifact) -> None:
        """Fail in seconds, not after training, when the data cannot fit the model: wrong input
        shapes (checked as each role loads) or labels beyond the classifier's outputs."""
        if self.recipe.model.task != "classification":
            return
        roles = [r for r in ("train", "eval") if self.data.has(r) and self.data.labeled(r)]
        if not roles:
            return
        from optimize.data.provider import check_outputs_fit_labels, dataset_labels

        inputs, _ = next(iter(self.data.loader(roles[0], 2)))
        if source.kind == ArtifactKind.TORCH:
            import torch

            from optimize.torch_io import load_into
            from optimize.training import call_model

            with torch.inference_mode():
                outputs = call_model(load_into(self.source.build(pretrained=False), source.file), inputs)
        else:
            from optimize.data.provider import as_feeds
            from optimize.onnx_tools import session

            names = [spec.name for spec in self.source.inputs()]
            outputs = session(source.file).run(None, as_feeds(inputs, names))[0]
        if len(outputs.shape) != 2:
            raise RecipeError(
                f"model: a classifier must output [batch, classes], this one outputs shape {list(outputs.shape)}; "
                "use task: embedding for other outputs"
            )
        for role in roles:
            check_outputs_fit_labels(role, int(outputs.shape[1]), dataset_labels(self.data.dataset(role)))

    # -- evaluation data and the FP32 reference -----------------------------------------------
    def _eval_key(self, kind: str, **extra: Any) -> str:
        settings = self.recipe.evaluation
        return hash_value(
            {
                "kind": kind,
                "eval": self.data.fingerprint("eval"),
                "max_samples": settings.max_samples,
                **extra,
            }
        )

    def eval_feeds(self) -> Artifact:
        """The eval set as arrays in one .npz file, for evaluation processes that have no torch."""
        import numpy as np

        def compute(workdir: Path) -> dict[str, Any]:
            inputs: dict[str, list] = {}
            labels = []
            seen = 0
            limit = self.recipe.evaluation.max_samples
            for feeds, batch_labels in self.data.numpy_batches("eval", 256):
                for name, value in feeds.items():
                    inputs.setdefault(name, []).append(value)
                labels.append(batch_labels)
                seen += len(batch_labels)
                if limit is not None and seen >= limit:
                    break
            arrays = {f"input:{name}": np.concatenate(parts)[:limit] for name, parts in inputs.items()}
            np.savez(workdir / "feeds.npz", labels=np.concatenate(labels)[:limit], **arrays)
            write_artifact_meta(workdir, ArtifactKind.ONNX, "feeds.npz", role="eval")
            return {}

        entry, _ = self._cached(self._eval_key("eval-feeds"), "eval data", compute)
        return self._artifact(entry)

    def reference_outputs(self, reference: Artifact) -> Artifact | None:
        """Outputs of the FP32 ONNX model on the eval set (ONNX Runtime on this CPU), cached."""
        if not self.data.has("eval"):
            return None
        import numpy as np

        from optimize.measure import onnx_outputs

        def compute(workdir: Path) -> dict[str, Any]:
            outputs, _ = onnx_outputs(reference, self.data, self.recipe.evaluation)
            np.save(workdir / "outputs.npy", outputs)
            write_artifact_meta(workdir, ArtifactKind.ONNX, "outputs.npy", reference=reference.hash)
            return {}

        key = self._eval_key(
            "reference-outputs", model=reference.hash, libraries=library_versions(["onnxruntime"])
        )
        entry, _ = self._cached(key, "FP32 reference outputs", compute)
        return self._artifact(entry)

    def reference_array(self, reference: Artifact | None):
        if reference is None:
            return None
        if reference.hash not in self._reference_outputs:
            import numpy as np

            stored = self.reference_outputs(reference)
            self._reference_outputs[reference.hash] = (
                np.load(stored.file, allow_pickle=False) if stored is not None else None
            )
        return self._reference_outputs[reference.hash]

    # -- steps --------------------------------------------------------------------------------
    def _run_step(
        self,
        index: int,
        step,
        current: Artifact,
        earlier: dict[str, Artifact],
        reference: Artifact | None,
        previous_metrics: dict[str, float],
    ) -> StepResult:
        from optimize.measure import measure

        stage_cls = STAGES.get(step.stage)
        step_id = step.id or step.stage
        self.current = f"stage '{step_id}'"
        stage = stage_cls()
        params = step.model_dump(mode="json", exclude={"id", "stage"})
        roles = set(stage_cls.roles_read(step)) | ({"eval"} if self.data.has("eval") else set())
        make_context = lambda workdir: StageContext(  # noqa: E731
            step_id=step_id,
            input=current,
            workdir=workdir,
            data=self.data,
            model_source=self.source,
            progress=self.progress,
            earlier=earlier,
            recipe=self.recipe,
        )
        key = stage_cache_key(
            input_hash=current.hash,
            stage_type=step.stage,
            params=params,
            data_fingerprints={role: self.data.fingerprint(role) for role in sorted(roles)},
            library_versions=library_versions(stage_cls.libraries),
            extra={**stage.cache_extra(step, make_context(None)), "measure": MEASURE_VERSION},
        )

        def compute(workdir: Path) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                output = stage.run(step, make_context(workdir))
            except OptimizeError:
                raise
            except Exception as exc:
                raise StageError(step_id, f"{type(exc).__name__}: {exc}") from exc
            seconds = time.perf_counter() - started
            artifact = Artifact.open(workdir, "pending")
            self._check_finite(step_id, artifact)
            ref_outputs = self.reference_array(reference) if artifact.kind == ArtifactKind.ONNX else None
            metrics = measure(
                artifact, self.source, self.data, self.recipe.evaluation, self.recipe.model.task, ref_outputs
            )
            if "macs" not in metrics and "macs" in previous_metrics:
                metrics["macs"] = previous_metrics["macs"]  # export and quantisation keep the MACs
            metrics.update(output.metrics)
            return {"seconds": seconds, "metrics": metrics, "info": output.info, "history": output.history}

        entry, cached = self._cached(key, f"stage {step_id}", compute)
        return StepResult(
            index=index,
            step_id=step_id,
            stage=step.stage,
            params=params,
            key=key,
            input_hash=current.hash,
            artifact=self._artifact(entry),
            cached=cached,
            seconds=entry["seconds"],
            metrics=entry["metrics"],
            info=entry.get("info", {}),
            history=entry.get("history", {}),
        )

    def _check_finite(self, step_id: str, artifact: Artifact) -> None:
        """A stage that produced NaN or infinite weights has failed, whatever it reported."""
        from optimize.validity import non_finite_tensors

        bad = non_finite_tensors(artifact)
        if bad:
            raise StageError(step_id, f"produced non-finite weights in {len(bad)} tensors (first: {bad[0]})")

    # -- targets --------------------------------------------------------------------------
    def _build(self, model: Artifact, device_class, runtime) -> tuple[Artifact, dict[str, Any], bool, str]:
        key = engine_cache_key(
            model.hash, build_settings(device_class), runtime.device_identity(device_class)
        )

        def compute(workdir: Path) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                info = runtime.build(model, device_class, workdir)
            except OptimizeError:
                raise
            except Exception as exc:
                raise TargetError(
                    device_class.name, f"{runtime.name} build failed: {type(exc).__name__}: {exc}"
                ) from exc
            return {"build": {**info, "build_time_s": time.perf_counter() - started}}

        entry, cached = self._cached(key, f"{device_class.name} engine", compute)
        return self._artifact(entry), entry["build"], cached, key

    def evaluate_engine(
        self, engine: Artifact, device_class, runtime, reference: Artifact | None
    ) -> Evaluation:
        from optimize.eval_worker import run_in_subprocess

        settings = self.recipe.evaluation
        reference_outputs = self.reference_outputs(reference) if reference is not None else None
        host = {k: v for k, v in host_identity().items() if k != "hostname"}
        key = hash_value(
            {
                "kind": "evaluation",
                "engine": engine.hash,
                "eval": self.data.fingerprint("eval"),
                "settings": settings.model_dump(mode="json"),
                "reference": reference_outputs.hash if reference_outputs is not None else None,
                "task": self.recipe.model.task,
                "device_class": build_settings(device_class),
                "threads": device_class.threads,
                "host": host,
                "runtime": runtime.device_identity(device_class),
            }
        )
        feeds = self.eval_feeds()

        def worker(request_settings, latency_only: bool) -> dict[str, Any]:
            scratch = self.store.new_workdir()
            try:
                return run_in_subprocess(
                    {
                        "device_class": device_class.model_dump(mode="json"),
                        "settings": request_settings.model_dump(mode="json"),
                        "engine_path": str(engine.path),
                        "engine_hash": engine.hash,
                        "feeds": str(feeds.file),
                        "reference": str(reference_outputs.file) if reference_outputs is not None else None,
                        "task": self.recipe.model.task,
                        "labeled": self.data.labeled("eval"),
                        "latency_only": latency_only,
                    },
                    scratch,
                )
            except RuntimeError as exc:
                raise TargetError(device_class.name, str(exc)) from exc
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

        def compute(workdir: Path) -> dict[str, Any]:
            from optimize.evaluation import pooled_latency

            share = per_process_timing(settings)
            first = worker(share, latency_only=False)
            per_process = [first["latency_samples_ms"]]
            per_process += [
                worker(share, latency_only=True)["latency_samples_ms"]
                for _ in range(settings.latency_processes - 1)
            ]
            metrics = {**first["metrics"], **pooled_latency(per_process)}
            return {"metrics": metrics, "latency_samples_ms": [s for samples in per_process for s in samples]}

        entry, cached = self._cached(key, f"{device_class.name} evaluation", compute)
        return Evaluation(
            metrics=entry["metrics"], latency_samples_ms=entry["latency_samples_ms"], cached=cached, key=key
        )

    def run_target(
        self, name: str, device_class, final: Artifact, reference: Artifact | None
    ) -> TargetResult:
        self.current = f"target '{name}'"
        runtime = RUNTIMES.get(device_class.runtime)()
        result = TargetResult(
            name=name, runtime=device_class.runtime, status="skipped", runtime_version=runtime.version()
        )
        availability = runtime.availability(device_class)
        if not availability.can_build:
            result.reason = availability.reason
            return result
        try:
            with self.progress.task(f"{name}: build + evaluate", None):
                result.engine, result.build, result.build_cached, result.engine_key = self._build(
                    final, device_class, runtime
                )
                if not availability.can_run:
                    result.status, result.reason = "built", availability.reason
                    return result
                if not self.data.has("eval"):
                    raise TargetError(name, "evaluation needs data.eval")
                result.evaluation = self.evaluate_engine(result.engine, device_class, runtime, reference)
                if (
                    reference is not None
                    and reference.hash != final.hash
                    and "fp32" in device_class.accepted_precisions
                ):
                    baseline_engine, _, _, _ = self._build(reference, device_class, runtime)
                    result.baseline = self.evaluate_engine(baseline_engine, device_class, runtime, reference)
        except TargetError as exc:
            result.status, result.reason = "failed", str(exc).split(": ", 1)[1]
            return result
        result.status = "ok"
        return result

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.perf_counter()
        run_id = new_run_id()
        run_dir = self.options.artifacts_dir / self.recipe.name / run_id
        steps: list[StepResult] = []
        source = self._source_artifact()
        self.current = "checking the data against the model"
        self._checked_preflight(source)
        current = source
        earlier = {"source": source}
        reference = source if source.kind == ArtifactKind.ONNX else None
        with self.progress.task("stages", len(self.recipe.stages)) as advance:
            for index, step in enumerate(self.recipe.stages):
                result = self._run_step(
                    index, step, current, earlier, reference, steps[-1].metrics if steps else {}
                )
                steps.append(result)
                current = result.artifact
                earlier[result.step_id] = current
                if reference is None and current.kind == ArtifactKind.ONNX:
                    reference = current
                note = "cached" if result.cached else f"{result.seconds:.1f}s"
                self.progress.note(
                    f"[green]✓[/] step {index + 1}/{len(self.recipe.stages)} {result.step_id} ({note})"
                )
                advance(status=result.step_id)
        classes = device_classes_for(self.recipe.device_classes)
        targets = []
        wanted = self.recipe.targets if self.options.only_targets is None else self.options.only_targets
        for name in wanted:
            target = self.run_target(name, classes[name], current, reference)
            targets.append(target)
            self.progress.note(
                f"[{'green' if target.status == 'ok' else 'yellow'}]•[/] target {name}: {target.status}"
                + (f" ({target.reason})" if target.reason else "")
            )
        self.current = "writing the manifest"
        return RunResult(
            run_id=run_id,
            run_dir=run_dir,
            recipe=self.loaded,
            source=source,
            steps=steps,
            targets=targets,
            seconds=time.perf_counter() - started,
            reference=reference,
        )


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
