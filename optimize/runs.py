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
    recipes = sorted(p.parent.name for p in artifacts_dir.glob("*/LATEST"))
    if name is not None and name not in recipes:
        raise UsageError(
            f"no runs of recipe '{name}' in {artifacts_dir}{did_you_mean(name, recipes)}; "
            f"recipes with runs: {', '.join(recipes) or 'none'}"
        )
    if run == "latest":
        if name is None:
            if len(recipes) != 1:
                raise UsageError(
                    f"'latest' needs --recipe when {artifacts_dir} holds runs of "
                    f"{len(recipes)} recipes ({', '.join(recipes) or 'none'})"
                )
            name = recipes[0]
        run = (artifacts_dir / name / "LATEST").read_text().strip()
    candidates = sorted(artifacts_dir.glob(f"{name or '*'}/{run}/manifest.json"))
    if not candidates:
        raise UsageError(f"no run '{run}' in {artifacts_dir}")
    return candidates[0]
