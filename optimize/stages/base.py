"""The contract between the pipeline and a stage.

A stage reads one input artifact, writes one output artifact into a work folder, and returns
metrics. It declares what kind of model it consumes and produces, which data it reads and which
libraries it calls; the pipeline derives cache keys and validation from those declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta
from optimize.recipe.base import Slug, StrictModel

if TYPE_CHECKING:
    from torch import nn

    from optimize.console import Progress
    from optimize.data.provider import DataProvider
    from optimize.models.base import ModelSource
    from optimize.recipe.model_spec import ModelSpec
    from optimize.recipe.schema import Recipe

Location = tuple  # a path into the recipe, e.g. ("stages", 2, "prune", "channel_ratio")


class StageParams(StrictModel):
    id: Slug | None = Field(
        None, description="name to refer to this step by (e.g. as a teacher); default: the stage type"
    )


@dataclass
class StageOutput:
    metrics: dict[str, float] = field(default_factory=dict)  # headline numbers, logged to MLflow
    info: dict[str, Any] = field(default_factory=dict)  # details for the manifest (per-layer counts, ...)
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch series, logged as steps


@dataclass
class StageContext:
    step_id: str
    input: Artifact
    workdir: Path
    data: DataProvider
    model_source: ModelSource
    progress: Progress
    earlier: dict[str, Artifact]  # outputs of earlier steps by step id ("source" is the start model)
    recipe: Recipe

    def load_torch(self, artifact: Artifact | None = None) -> nn.Module:
        from optimize.torch_io import load_into

        artifact = artifact or self.input
        return load_into(self.model_source.build(pretrained=False), artifact.file)

    def save_torch(self, model: nn.Module, **meta: Any) -> None:
        from optimize.torch_io import save_module

        model.eval()
        save_module(model, self.workdir / "model.pt")
        write_artifact_meta(self.workdir, ArtifactKind.TORCH, "model.pt", **meta)


def model_skeleton(spec: ModelSpec, base_dir: Path) -> nn.Module | None:
    """A model's structure for validation-time checks, or None when it cannot be built here
    (the model source then reports its own problem when the run starts)."""
    from optimize.models.base import open_source

    try:
        return open_source(spec, base_dir).build(pretrained=False)
    except Exception:  # any failure of user code: leave the reporting to the run
        return None


class Stage:
    """Subclass, set the class attributes, implement run(), and register with @STAGES.register."""

    name: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    consumes: ClassVar[ArtifactKind]
    produces: ClassVar[ArtifactKind]
    data_roles: ClassVar[tuple[str, ...]] = ()  # data read by every use of the stage
    libraries: ClassVar[tuple[str, ...]] = ("torch",)
    # True for stages that trade the model's quality for size or speed (prune, distill, quantize):
    # the model entering the first of them is the "original" every target is compared with.
    compresses: ClassVar[bool] = False

    @classmethod
    def summary(cls) -> str:
        return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())

    @classmethod
    def roles_read(cls, params: StageParams) -> tuple[str, ...]:
        """Data roles this use of the stage reads (some depend on parameters)."""
        return cls.data_roles

    @classmethod
    def check(
        cls, params: StageParams, recipe: Recipe, index: int, base_dir: Path
    ) -> list[tuple[Location, str]]:
        """Problems visible from the recipe alone (base_dir: the recipe's folder), reported before
        any work starts."""
        return []

    @classmethod
    def precision_after(cls, params: StageParams, before: str) -> str:
        return before

    def cache_extra(self, params: StageParams, context: StageContext) -> dict[str, Any]:
        """Inputs besides the main artifact and data that change the output (a teacher's hash)."""
        return {}

    def run(self, params: StageParams, context: StageContext) -> StageOutput:
        raise NotImplementedError
