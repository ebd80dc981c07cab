"""What a pipeline run is told beyond its recipe: where to write, what to skip, and (for a
rebuild from the registry) the evaluation inputs another machine recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimize.artifacts import Artifact
from optimize.console import Progress


@dataclass
class RunOptions:
    artifacts_dir: Path
    no_cache: bool = False
    only_targets: list[str] | None = None
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    given_eval: GivenEval | None = None


@dataclass(frozen=True)
class GivenEval:
    """A registered model's evaluation inputs as the machine that ran the recipe recorded them:
    the model's interface and the eval samples themselves, so a rebuild on another machine scores
    exactly those samples and needs neither the model's source nor its data source."""

    interface: dict[str, Any]
    feeds: Artifact
    labeled: bool
