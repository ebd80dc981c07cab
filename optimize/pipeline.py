"""Runs a recipe: the start model, each step in order (from the cache when nothing changed), the
original model exported for comparison, then per target a build of every engine and one
evaluation session timing the candidate and its baselines side by side.

Every unit of work (a step, an engine build, an evaluation session) is looked up in the store
under a key from keys.py that hashes everything its result depends on, the code that computes it
included; only misses do work. This module decides what runs in which order; the numbers are
computed by the modules named in each key (stages, measure, runtimes, the evaluation worker).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimize import keys
from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.code_fingerprint import code_fingerprint
from optimize.comparison import baseline_models, measured_agreement
from optimize.data.base import DataContext
from optimize.data.provider import ROLES, DataProvider
from optimize.errors import OptimizeError, RecipeError, StageError, TargetError
from optimize.file_reads import ReadsMemo
from optimize.library_output import library_output
from optimize.measure import LIBRARIES as MEASURE_LIBRARIES
from optimize.models.base import open_source
from optimize.recipe.checks import first_compression
from optimize.recipe.loader import LoadedRecipe
from optimize.registries import RUNTIMES, STAGES
from optimize.results import Baseline, OriginalModel, RunResult, StepResult, TargetResult
from optimize.run_options import RunOptions
from optimize.stages.base import StageContext
from optimize.store import ArtifactStore
from optimize.target_evaluation import Evaluation
from optimize.targets import device_classes_for
from optimize.versions import host_hardware, library_versions


def new_run_id() -> str:
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class Pipeline:
    def __init__(self, loaded: LoadedRecipe, options: RunOptions):
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.options = options
        self.progress = options.progress
        self.store = ArtifactStore(options.artifacts_dir / "store")
        self.reads = ReadsMemo(self.store)
        self.source = open_source(self.recipe.model, loaded.base_dir)
        self.data = DataProvider.for_recipe(
            self.recipe, DataContext(loaded.base_dir, self.source, self.reads)
        )
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

    @functools.cached_property
    def interface(self) -> dict[str, Any]:
        """The model's inputs, outputs and task, remembered per source: deriving them can mean
        loading a tokenizer (seconds of imports) that a cached run otherwise never needs."""
        if self.options.given_eval is not None:
            return self.options.given_eval.interface
        key = keys.interface_key(self.source.fingerprint(self.reads))
        entry, _ = self._cached(
            key, "model interface", lambda workdir: {"interface": self.source.interface()}
        )
        return entry["interface"]

    def _artifact(self, entry: dict[str, Any]) -> Artifact:
        digest = entry["artifacts"]["model"]
        return Artifact.open(self.store.object_path(digest), digest)

    # -- the start model, checked against the data --------------------------------------------
    def preflight(self) -> Artifact:
        """The start model, built and checked against the data before any work: all `validate`
        does beyond the recipe's own checks, and the first thing `run` does (both remembered)."""
        try:
            source = self._source_artifact()
            self.current = "checking the data against the model"
            self._checked_preflight(source)
        except RecipeError as exc:  # named like the recipe's own problems: file, then field
            raise RecipeError(f"{self.loaded.path or 'recipe mapping'}: {exc}") from exc
        return source

    def _source_artifact(self) -> Artifact:
        """The start model as the recipe's `model:` section builds it (its fingerprint may build it
        too): a model it cannot build is a problem with that section, for `validate` to report."""
        self.current = "loading the model source"
        try:
            key = keys.source_key(self.source.fingerprint(self.reads), library_versions(["torch", "onnx"]))
            entry, _ = self._cached(
                key,
                f"source {self.recipe.model.source}",
                lambda workdir: self.source.materialize(workdir, self.reads) or {},
            )
            for line in self.source.weights_report.lines() if self.source.weights_report else []:
                self.progress.note(line)
        except OptimizeError:
            raise
        except Exception as exc:
            raise RecipeError(
                f"model: cannot build the model from '{self.recipe.model.source}': {type(exc).__name__}: {exc}"
            ) from exc
        return self._artifact(entry)

    def _checked_preflight(self, source: Artifact) -> None:
        """The data-against-model check once per model, interface and data (remembered)."""
        from optimize.preflight import check_data_fits_model

        roles = [r for r in ("train", "eval") if self.data.has(r)]
        key = keys.preflight_key(
            source.hash,
            self.interface,
            {role: self.data.fingerprint(role) for role in roles},
            code_fingerprint("optimize.preflight"),
        )
        self._cached(
            key,
            "data and model check",
            lambda workdir: (
                check_data_fits_model(source, self.source, self.data, self.recipe.model.task) or {}
            ),
        )

    # -- evaluation data and reference outputs ------------------------------------------------
    def eval_feeds(self) -> Artifact | None:
        """The eval set as arrays in one .npz file, for processes that have no torch."""
        if self.options.given_eval is not None:
            return self.options.given_eval.feeds
        if not self.data.has("eval"):
            return None

        def compute(workdir: Path) -> dict[str, Any]:
            self.data.save_feeds("eval", workdir / "feeds.npz")
            write_artifact_meta(workdir, ArtifactKind.ONNX, "feeds.npz", role="eval")
            return {}

        key = keys.eval_feeds_key(
            self.data.fingerprint("eval"),
            [spec["name"] for spec in self.interface["inputs"]],
            code_fingerprint("optimize.data.provider"),
        )
        entry, _ = self._cached(key, "eval data", compute)
        return self._artifact(entry)

    def reference_outputs(self, model: Artifact) -> Artifact | None:
        """A model's outputs on the eval feeds (ONNX Runtime on this CPU), cached."""
        feeds = self.eval_feeds()
        if feeds is None:
            return None
        import numpy as np

        from optimize.measure import onnx_outputs
        from optimize.model_io import ModelIO

        batch_size = self.recipe.evaluation.batch_size

        def compute(workdir: Path) -> dict[str, Any]:
            # the remembered interface: deriving it again may load a tokenizer
            outputs, _ = onnx_outputs(
                model.file, feeds.file, batch_size, ModelIO.from_interface(self.interface)
            )
            np.savez(workdir / "outputs.npz", **outputs)
            write_artifact_meta(workdir, ArtifactKind.ONNX, "outputs.npz", reference=model.hash)
            return {}

        key = keys.reference_outputs_key(
            model.hash,
            feeds.hash,
            self.interface["outputs"],
            batch_size,
            library_versions(["onnxruntime"]),
            code_fingerprint("optimize.measure"),
        )
        entry, _ = self._cached(key, "reference outputs", compute)
        return self._artifact(entry)

    def reference_array(self, reference: Artifact | None):
        if reference is None:
            return None
        if reference.hash not in self._reference_outputs:
            from optimize.evaluation import load_outputs

            stored = self.reference_outputs(reference)
            self._reference_outputs[reference.hash] = (
                load_outputs(stored.file) if stored is not None else None
            )
        return self._reference_outputs[reference.hash]

    # -- steps --------------------------------------------------------------------------------
    def _run_step(
        self, index: int, step, current: Artifact, earlier: dict[str, Artifact], reference: Artifact | None
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
        measures_agreement = stage_cls.produces == ArtifactKind.ONNX and reference is not None
        key = keys.step_key(
            input_hash=current.hash,
            stage_type=step.stage,
            params={k: v for k, v in params.items() if k not in getattr(step, "key_exempt", ())},
            data_fingerprints={role: self.data.fingerprint(role) for role in sorted(roles)},
            library_versions=library_versions(sorted({*stage_cls.libraries, *MEASURE_LIBRARIES})),
            interface=keys.interface_read_by(stage_cls.produces == ArtifactKind.ONNX, self.interface),
            measurement={
                "batch_size": self.recipe.evaluation.batch_size,
                "reference": reference.hash if measures_agreement else None,
            },
            extra=stage.cache_extra(step, make_context(None)),
            code=code_fingerprint(stage_cls.__module__, "optimize.measure", "optimize.validity"),
        )

        def compute(workdir: Path) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                with library_output(shown=self.progress.enabled):
                    output = stage.run(step, make_context(workdir))
            except OptimizeError:
                raise
            except Exception as exc:
                raise StageError(step_id, f"{type(exc).__name__}: {exc}") from exc
            seconds = time.perf_counter() - started
            artifact = Artifact.open(workdir, "pending")
            self._check_finite(step_id, artifact)
            onnx = artifact.kind == ArtifactKind.ONNX
            feeds = self.eval_feeds() if onnx else None
            metrics = measure(
                artifact,
                self.source,
                self.data,
                feeds.file if feeds is not None else None,
                self.recipe.evaluation.batch_size,
                self.recipe.model.task,
                self.reference_array(reference) if measures_agreement else None,
            )
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

    def _original(self, entering: Artifact, before_step: str, earlier: dict[str, Artifact]) -> OriginalModel:
        """The model entering the first compression step as ONNX: as it is, or exported with the
        recipe's own export step (same parameters, so the key is the one an export right there
        would have, and the file is what the recipe would have shipped without compression)."""
        if entering.kind == ArtifactKind.ONNX:
            return OriginalModel(artifact=entering, before_step=before_step)
        export_step = next(step for step in self.recipe.stages if step.stage == "export")
        exported = self._run_step(-1, export_step, entering, earlier, reference=None)
        self.progress.note(
            f"[green]✓[/] original model exported for comparison ({'cached' if exported.cached else f'{exported.seconds:.1f}s'})"
        )
        return OriginalModel(artifact=exported.artifact, before_step=before_step, export=exported)

    # -- targets --------------------------------------------------------------------------
    def _build(self, model: Artifact, device_class, runtime) -> tuple[Artifact, dict[str, Any], bool, str]:
        key = keys.engine_key(
            model.hash,
            keys.engine_build_settings(device_class),
            runtime.device_identity(device_class),
            code_fingerprint(type(runtime).__module__),
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

    def evaluate_session(
        self, engines: dict[str, Artifact], device_class, runtime, references: dict[str, Artifact]
    ) -> tuple[dict[str, Evaluation], str, bool]:
        """Evaluations by role from one session of interleaved fresh processes (cached whole)."""
        from optimize.eval_worker import run_in_subprocess
        from optimize.target_evaluation import per_process_share, run_session, write_timing_inputs

        settings = self.recipe.evaluation
        feeds = self.eval_feeds()
        reference_files = {name: self.reference_outputs(model) for name, model in references.items()}
        labeled = self.options.given_eval.labeled if self.options.given_eval else self.data.labeled("eval")
        key = keys.evaluation_key(
            engines={role: engine.hash for role, engine in engines.items()},
            feeds_hash=feeds.hash,
            references={name: outputs.hash for name, outputs in reference_files.items()},
            settings=settings.model_dump(mode="json"),
            device_class=keys.engine_run_settings(device_class),
            host=host_hardware(),
            runtime=runtime.device_identity(device_class),
            task=self.recipe.model.task,
            eval_output=self.interface["eval_output"],
            labeled=labeled,
            code=code_fingerprint(
                "optimize.target_evaluation", "optimize.eval_worker", type(runtime).__module__
            ),
        )
        distinct = len({engine.hash for engine in engines.values()})
        share = per_process_share(settings)

        def compute(workdir: Path) -> dict[str, Any]:
            scratch = self.store.new_workdir()
            timing = scratch / "timing.npz"
            write_timing_inputs(feeds.file, timing, device_class.batch.min, device_class.batch.opt)

            def worker(engine: Artifact, score: bool) -> dict[str, Any]:
                request = {
                    "device_class": device_class.model_dump(mode="json"),
                    "settings": share.model_dump(mode="json"),
                    "engine_path": str(engine.path),
                    "engine_hash": engine.hash,
                    "timing_inputs": str(timing),
                    "quality": {
                        "feeds": str(feeds.file),
                        "references": {name: str(outputs.file) for name, outputs in reference_files.items()},
                        "interface": self.interface,
                        "task": self.recipe.model.task,
                        "labeled": labeled,
                    }
                    if score
                    else None,
                }
                try:
                    return run_in_subprocess(request, scratch)
                except RuntimeError as exc:
                    raise TargetError(device_class.name, str(exc)) from exc

            try:
                with self.progress.task(
                    f"{device_class.name}: evaluate", distinct * settings.latency_processes
                ) as advance:
                    evaluations = run_session(
                        engines,
                        worker,
                        settings.latency_processes,
                        device_class.batch.opt,
                        device_class.batch.min,
                        on_process=advance,
                    )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return {"evaluations": {role: evaluation.as_record() for role, evaluation in evaluations.items()}}

        entry, cached = self._cached(key, f"{device_class.name} evaluation", compute)
        evaluations = {role: Evaluation(**record) for role, record in entry["evaluations"].items()}
        return evaluations, key, cached

    def run_target(
        self,
        name: str,
        device_class,
        final: Artifact,
        reference: Artifact | None,
        original: Artifact | None,
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
            with self.progress.task(f"{name}: build", None):
                result.engine, result.build, result.build_cached, result.engine_key = self._build(
                    final, device_class, runtime
                )
                if not availability.can_run:
                    result.status, result.reason = "built", availability.reason
                    return result
                if self.eval_feeds() is None:
                    raise TargetError(name, "evaluation needs data.eval")
                models, result.unmeasured = baseline_models(
                    final, reference, original, "fp32" in device_class.accepted_precisions, name
                )
                for role, model in models.items():
                    engine, build, cached, engine_key = self._build(model, device_class, runtime)
                    result.baselines[role] = Baseline(model, engine, engine_key, cached, build)
                alternatives = {
                    name: self._build(model, device_class, runtime)
                    for name, model in alternative_candidates(final).items()
                }
            references = {"fp32": reference, "original": original}
            inexact = runtime.inexact_rewrite(result.build)
            if inexact:
                references["model"] = final  # the engine against its own model file, to measure it
            engines = {"candidate": result.engine}
            engines.update({role: baseline.engine for role, baseline in result.baselines.items()})
            engines.update({f"candidate:{name}": built[0] for name, built in alternatives.items()})
            evaluations, result.evaluation_key, result.evaluation_cached = self.evaluate_session(
                engines, device_class, runtime, {k: v for k, v in references.items() if v is not None}
            )
        except TargetError as exc:
            result.status, result.reason = "failed", exc.reason
            return result
        result.evaluation = evaluations["candidate"]
        for role, baseline in result.baselines.items():
            baseline.evaluation = evaluations[role]
        if final.meta.get("quantization", {}).get("precision") == "auto":
            self._ship_fastest(result, final, alternatives, evaluations)
            inexact = inexact if result.choice["chosen"] == "int8" else None
        if inexact:
            measured = result.evaluation.metrics
            agreement = measured_agreement(measured, "model")
            result.notes.append(
                f"{inexact}; measured against the model file on the eval set: agreement "
                f"{100 * agreement:.2f} %, max |diff| {measured['max_abs_diff_vs_model']:.3g}"
            )
        result.status = "ok"
        return result

    @staticmethod
    def _ship_fastest(result: TargetResult, final: Artifact, alternatives: dict, evaluations: dict) -> None:
        """precision: auto: the target ships the fastest candidate within the step's accuracy
        budget (FP32 included), measured in the session just run."""
        from optimize.comparison import compare
        from optimize.precision_choice import FP32, choose

        budget = final.meta["quantization"]["max_accuracy_drop"]
        baseline = result.baselines.get(FP32)
        if baseline is None:  # nothing to hold the candidates to: the step's own model ships
            why = f"int8: no FP32 baseline on this target ({result.unmeasured.get('speedup_vs_fp32', '')})"
            result.choice = {"chosen": "int8", "why": why, "max_accuracy_drop": budget, "candidates": {}}
            result.notes.append(f"precision auto shipped {why}")
            return
        shipped = {"int8": (result.engine, result.build, result.engine_key, evaluations["candidate"])}
        for name, (engine, build, _, key) in alternatives.items():
            shipped[name] = (engine, build, key, evaluations[f"candidate:{name}"])
        shipped[FP32] = (baseline.engine, baseline.build, baseline.engine_key, baseline.evaluation)
        measured = {}
        for name, (engine, _, _, evaluation) in shipped.items():
            metrics = {**evaluation.metrics, "size_mb": engine.size_bytes / 1_000_000}
            measured[name] = {
                "latency_p50_ms": metrics["latency_p50_ms"],
                "round_p50_ms": evaluation.round_p50_ms,
                **compare(metrics, baseline.metrics, FP32)[0],
            }
        chosen, why, records = choose(measured, budget)
        result.engine, result.build, result.engine_key, result.evaluation = shipped[chosen]
        result.choice = {"chosen": chosen, "why": why, "max_accuracy_drop": budget, "candidates": records}
        result.notes.append(f"precision auto shipped {why}")

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.perf_counter()
        run_id = new_run_id()
        run_dir = self.options.artifacts_dir / self.recipe.name / run_id
        steps: list[StepResult] = []
        source = self.preflight()
        current = source
        earlier = {"source": source}
        reference = source if source.kind == ArtifactKind.ONNX else None
        with self.progress.task("stages", len(self.recipe.stages)) as advance:
            for index, step in enumerate(self.recipe.stages):
                result = self._run_step(index, step, current, earlier, reference)
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
        wanted = self.recipe.targets if self.options.only_targets is None else self.options.only_targets
        original = None
        compression = first_compression(self.recipe.stages)
        if wanted and compression is not None:
            self.current = "exporting the original model for comparison"
            entering = steps[compression - 1].artifact if compression else source
            original = self._original(entering, self.recipe.step_ids()[compression], earlier)
        targets = []
        for name in wanted:
            target = self.run_target(
                name, classes[name], current, reference, original.artifact if original else None
            )
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
            original=original,
            eval_feeds=self.eval_feeds() if reference is not None else None,
            interface=self.interface,
            data_fingerprints={role: self.data.fingerprint(role) for role in ROLES if self.data.has(role)},
        )


def alternative_candidates(model: Artifact) -> dict[str, Artifact]:
    """A `precision: auto` step's other candidates, beside its own (INT8) model: by name."""
    candidates = model.meta.get("quantization", {}).get("candidates", {})
    return {
        name: Artifact.open(model.path / record["folder"], record["hash"])
        for name, record in candidates.items()
        if record["folder"]
    }


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
