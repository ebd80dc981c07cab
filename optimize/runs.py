"""Finding earlier runs in the artifacts folder: by run id, or the latest run of a recipe."""

from __future__ import annotations

from pathlib import Path

from optimize.errors import UsageError
from optimize.registry import did_you_mean


def recipe_name(recipe: str | None) -> str | None:
    """A recipe given as a name, or as a path to its YAML file."""
    if recipe is None:
        return None
    if recipe.endswith((".yaml", ".yml")):
        from optimize.recipe.loader import load_recipe

        return load_recipe(recipe).recipe.name
    return recipe


def find_run(artifacts_dir: Path, run: str, recipe: str | None = None) -> Path:
    """The manifest.json of RUN ('latest' or a run id), optionally within one recipe."""
    name = recipe_name(recipe)
    latest = {p.parent.name: p.read_text().strip() for p in sorted(artifacts_dir.glob("*/LATEST"))}
    if not latest:
        raise UsageError(
            f"no runs in {artifacts_dir}: pass --artifacts DIR, the folder `optimize run` wrote them to "
            "(default: artifacts/ in the folder it ran in)"
        )
    if name is not None and name not in latest:
        raise UsageError(
            f"no runs of recipe '{name}' in {artifacts_dir}{did_you_mean(name, latest)}; recipes with runs "
            f"there: {', '.join(latest)} (pass one as --recipe, or --artifacts DIR where its runs are)"
        )
    if run == "latest":
        if name is None:
            if len(latest) != 1:
                raise UsageError(
                    f"'latest' needs --recipe NAME: {artifacts_dir} holds runs of {len(latest)} recipes "
                    f"({', '.join(latest)})"
                )
            (name,) = latest
        run = latest[name]
    candidates = sorted(artifacts_dir.glob(f"{name or '*'}/{run}/manifest.json"))
    if not candidates:
        runs = [p.parent.name for p in artifacts_dir.glob(f"{name or '*'}/*/manifest.json")]
        newest = ", ".join(f"{other} {run_id}" for other, run_id in latest.items() if name in (None, other))
        raise UsageError(
            f"no run '{run}'{f' of recipe {name}' if name else ''} in {artifacts_dir}"
            f"{did_you_mean(run, runs)}; the latest: {newest} (runs written elsewhere: pass --artifacts DIR)"
        )
    return candidates[0]
