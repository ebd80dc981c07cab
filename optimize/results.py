"""What a run produced: its steps, the original model, and per target the engines, their
evaluations and the comparisons with the baselines (numbers derived here, never stored twice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimize.artifacts import Artifact
from optimize.comparison import compare, speedup_spread
from optimize.recipe.loader import LoadedRecipe
from optimize.target_evaluation import Evaluation


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
class OriginalModel:
    """The model as it entered the first compression step, as ONNX (exported when it was torch)."""

    artifact: Artifact
    before_step: str  # id of the first compression step
    export: StepResult | None = None  # the export that made it ONNX, when it was a torch model


@dataclass
class Baseline:
    """A baseline model built for one target, and its numbers from the target's session."""

    model: Artifact
    engine: Artifact
    engine_key: str
    build_cached: bool
    build: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = None

    @property
    def metrics(self) -> dict[str, float]:
        metrics = dict(self.evaluation.metrics) if self.evaluation else {}
        metrics["size_mb"] = self.engine.size_bytes / 1_000_000
        return {**metrics, **build_metrics(self.build)}


def build_metrics(build: dict[str, Any]) -> dict[str, float]:
    """Numbers a runtime read from the engine it built (what its kernels run in INT8)."""
    return {name: float(build[name]) for name in ("int8_mac_share",) if build.get(name) is not None}


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
    evaluation: Evaluation | None = None  # the candidate (the final model)
    baselines: dict[str, Baseline] = field(default_factory=dict)  # "original", "fp32"
    unmeasured: dict[str, str] = field(default_factory=dict)  # comparison metric → why it is missing
    evaluation_key: str = ""
    evaluation_cached: bool = False
    notes: list[str] = field(default_factory=list)
    choice: dict[str, Any] = field(default_factory=dict)  # precision: auto — what was shipped and why

    @property
    def metrics(self) -> dict[str, float]:
        """The candidate's numbers with its comparisons against each baseline of the session."""
        return self._compared()[0]

    @property
    def missing_comparisons(self) -> dict[str, str]:
        """Every comparison metric that is not in `metrics`, with the reason."""
        return self._compared()[1]

    def _compared(self) -> tuple[dict[str, float], dict[str, str]]:
        metrics = dict(self.evaluation.metrics) if self.evaluation else {}
        missing = dict(self.unmeasured)
        if self.engine is not None:
            metrics["size_mb"] = self.engine.size_bytes / 1_000_000
            metrics["build_time_s"] = float(self.build.get("build_time_s", 0.0))
            metrics.update(build_metrics(self.build))
        if self.evaluation is None:
            return metrics, missing
        own = dict(metrics)
        for name, baseline in self.baselines.items():
            if baseline.evaluation is None:
                continue
            compared, why = compare(own, baseline.metrics, name)
            spread = speedup_spread(baseline.evaluation.round_p50_ms, self.evaluation.round_p50_ms)
            if spread is not None:
                compared[f"speedup_vs_{name}_spread"] = spread
            metrics.update(compared)
            missing.update(why)
        return metrics, missing


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
    original: OriginalModel | None
    eval_feeds: Artifact | None = None  # the eval samples every target was scored on
    interface: dict[str, Any] | None = None  # the model's inputs, outputs, task (Pipeline.interface)
    data_fingerprints: dict[str, str] = field(default_factory=dict)  # by role: what the samples were

    @property
    def artifacts_dir(self) -> Path:
        """The folder holding the store and this run's folder (<artifacts>/<recipe>/<run id>)."""
        return self.run_dir.parent.parent

    @property
    def final(self) -> Artifact:
        return self.steps[-1].artifact if self.steps else self.source


@dataclass
class RunOutcome:
    """What `optimize.run` returns: the run's results, what it wrote, the gate decisions and the
    exit code the command line would give."""

    result: RunResult
    manifest_path: Path
    step_records: list[dict[str, Any]]  # per step as in the manifest
    target_records: list[dict[str, Any]]  # per target as in the manifest, comparisons included
    gates: list[Any]  # optimize.gates.GateResult, one per limit
    exit_code: int  # 0 ok, 1 a gate failed, 3 a target failed (optimize.errors)
    problems: list[str]  # one line per reason the exit code is not 0
    warnings: list[str]  # what went wrong without failing the run (tracking, the report)
    tracking: dict[str, Any] | None  # MLflow run ids and URLs, when logged
    files: list[Path]  # gates.json, junit.xml, summary.md, report.html
    bundles: list[Path] = field(default_factory=list)  # with `bundle: true`, one per ok target

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def run_dir(self) -> Path:
        return self.result.run_dir

    @property
    def steps(self) -> list[StepResult]:
        return self.result.steps

    @property
    def targets(self) -> list[TargetResult]:
        return self.result.targets

    @property
    def passed(self) -> bool:
        return self.exit_code == 0
