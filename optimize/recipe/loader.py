"""Reading a recipe file: safe YAML, schema validation, cross-checks, and error messages that
name the file, the line, the field, what was wrong and what is valid."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from optimize.errors import RecipeError
from optimize.hashing import hash_value
from optimize.recipe.yaml_source import MAX_BYTES, ParsedYaml, YamlProblem, parse_yaml
from optimize.registry import did_you_mean


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Any  # optimize.recipe.schema.Recipe
    path: Path | None  # None for a recipe given as a mapping
    text: str  # the recipe as written (YAML), copied into every run folder
    base_dir: Path  # where the recipe's relative paths resolve

    @property
    def hash(self) -> str:
        """Hash of the resolved recipe (defaults filled in, paths absolute)."""
        return hash_value(self.recipe.model_dump(mode="json"))


def format_location(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def locate(location: tuple, lines: dict[tuple, int]) -> tuple[tuple, int | None]:
    """Map a pydantic error location onto the YAML path it came from and its line.

    Union tags that are not written in the file (e.g. the data source kind) are skipped;
    elements after the last one found (a missing field) are kept for display.
    """
    matched: tuple = ()
    display: list = []
    for index, part in enumerate(location):
        candidate = (*matched, part)
        if candidate in lines:
            matched = candidate
            display.append(part)
        elif index + 1 < len(location) and (*matched, location[index + 1]) in lines:
            continue
        else:
            display.append(part)
    return tuple(display), lines.get(matched)


def _choices_hint(error: dict) -> str:
    if error["type"] != "literal_error" or not isinstance(error.get("input"), str):
        return ""
    choices = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
    return did_you_mean(error["input"], choices)


def describe_error(error: dict) -> tuple[tuple, str]:
    location = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if "at" in ctx:  # our own errors name the key they are about
        location = (*location, ctx["at"])
    message = error["msg"]
    if error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] not in ("unknown_key", "unknown_stage", "model_source", "path_missing") and _is_scalar(
        error.get("input")
    ):
        message = f"{message} (got {error['input']!r})"
    message += _choices_hint(error)
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return location, message


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def printable(text: str) -> str:
    """Control characters from the file escaped, so every problem stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _problem_lines(file: Path | str, problems: list[tuple[tuple, str]], lines: dict[tuple, int]) -> list[str]:
    rendered = []
    for location, message in problems:
        display, line = locate(location, lines)
        where = f"{file}:{line}" if line else str(file)
        rendered.append(printable(f"{where}: {format_location(display)}: {message}"))
    return list(dict.fromkeys(rendered))


def read_yaml_file(path: Path, what: str) -> ParsedYaml:
    if not path.is_file():
        raise RecipeError(f"{path}: no such {what} file")
    if path.stat().st_size > MAX_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_BYTES // 1024} KiB; a {what} is a few KiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return parse_yaml(text)
    except YamlProblem as exc:
        raise RecipeError(f"{path}:{exc.line}: {exc}" if exc.line else f"{path}: {exc}") from None


def load_data_definition(path: Path) -> dict:
    """A data source definition file (e.g. calibration/digits-300.yaml): one mapping."""
    parsed = read_yaml_file(path, "data definition")
    if not isinstance(parsed.data, dict):
        raise ValueError(f"{path} must hold one mapping with a 'source' key")
    return parsed.data


def load_device_class_file(path: Path) -> list:
    """A file of device classes a recipe names, checked here, so that a problem names this file,
    its line and the key (the recipe then reports it at its `device_classes` key)."""
    from pydantic import TypeAdapter

    from optimize.targets.device_class import DeviceClass

    parsed = read_yaml_file(path, "device classes")
    if not isinstance(parsed.data, list):
        raise RecipeError(f"{path} must hold a list of device classes")
    try:
        TypeAdapter(list[DeviceClass]).validate_python(parsed.data)
    except ValidationError as exc:
        problems = [describe_error(error) for error in exc.errors()]
        raise RecipeError("; ".join(_problem_lines(path, problems, parsed.lines))) from None
    return parsed.data


def load_recipe(source: Path | str | Mapping[str, Any], base_dir: Path | str | None = None) -> LoadedRecipe:
    """A validated recipe from a YAML file, or from a mapping (relative paths in it resolve against
    `base_dir`, default the current folder). Every problem is one line naming file, key and fix."""
    if isinstance(source, Mapping):
        import yaml

        data = dict(source)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        where = Path(base_dir or ".").resolve()
        return _validated(data, None, text, where, "recipe mapping", _key_paths(data))
    path = Path(source).resolve()
    parsed = read_yaml_file(path, "recipe")
    if not isinstance(parsed.data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with at least 'name' and 'model'")
    return _validated(parsed.data, path, path.read_text(encoding="utf-8"), path.parent, path, parsed.lines)


def _key_paths(value: Any, prefix: tuple = ()) -> dict[tuple, None]:
    """Every key path of a mapping (no lines to show): error locations then read as written,
    without the union tags pydantic adds (e.g. a quantize step's method)."""
    paths: dict[tuple, None] = {prefix: None} if prefix else {}
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        paths.update(_key_paths(child, (*prefix, key)))
    return paths


def _validated(
    data: dict, path: Path | None, text: str, base_dir: Path, label: Path | str, lines: dict[tuple, int]
) -> LoadedRecipe:
    from optimize.recipe.checks import recipe_problems
    from optimize.recipe.schema import Recipe

    try:
        recipe = Recipe.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems = [describe_error(error) for error in exc.errors()]
        raise RecipeError("\n".join(_problem_lines(label, problems, lines))) from None
    problems = recipe_problems(recipe, base_dir)
    if problems:
        raise RecipeError("\n".join(_problem_lines(label, problems, lines)))
    return LoadedRecipe(recipe=recipe, path=path, text=text, base_dir=base_dir)
