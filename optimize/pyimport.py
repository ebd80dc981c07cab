"""Importing the user's own Python code named in a recipe (`python:<module>:<name>`).

A module is looked up first as a file or package in the folders the user named (the recipe's
folder), then among installed packages. The current directory is never searched, so a recipe
cannot pick up a stray module that happens to sit where the command was started. A module found
in a folder may import its sibling helper modules: the folder is appended to sys.path, after
everything else, so it never shadows the standard library or an installed package.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimize.registry import did_you_mean


class ImportProblem(Exception):
    pass


def split_reference(reference: str) -> tuple[str, str]:
    """'pkg.module:function' → ('pkg.module', 'function')."""
    module, sep, name = reference.rpartition(":")
    if (
        not sep
        or not module
        or not name.isidentifier()
        or not all(p.isidentifier() for p in module.split("."))
    ):
        raise ImportProblem(f"'{reference}' is not of the form <module>:<function> (e.g. my_models:build)")
    return module, name


def module_file(module: str, search_dirs: list[Path]) -> Path | None:
    relative = Path(*module.split("."))
    for folder in search_dirs:
        for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _import_from_file(module: str, path: Path) -> Any:
    name = f"optimize_user.{module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None
    )
    if spec is None or spec.loader is None:
        raise ImportProblem(f"cannot import {path}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except Exception as exc:
        del sys.modules[name]
        raise ImportProblem(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return loaded


def load_callable(reference: str, search_dirs: list[Path]) -> Callable[..., Any]:
    module_name, attr = split_reference(reference)
    path = module_file(module_name, search_dirs)
    if path is not None:
        folder = str(next(d for d in search_dirs if path.is_relative_to(d)))
        if folder not in sys.path:
            sys.path.append(folder)  # last: its helpers import, nothing installed is shadowed
        module = _import_from_file(module_name, path)
    else:
        if importlib.util.find_spec(module_name.split(".")[0]) is None:
            where = ", ".join(str(d) for d in search_dirs) or "nowhere"
            raise ImportProblem(f"no module '{module_name}' in {where} nor among installed packages")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ImportProblem(f"importing '{module_name}' failed: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        names = [name for name, value in vars(module).items() if callable(value) and not name.startswith("_")]
        raise ImportProblem(f"module '{module_name}' has no function '{attr}'{did_you_mean(attr, names)}")
    return function


def reference_resolvable(reference: str, search_dirs: list[Path]) -> str | None:
    """Problem text, or None when the module can be found (without running any of its code)."""
    try:
        module_name, _ = split_reference(reference)
    except ImportProblem as exc:
        return str(exc)
    if module_file(module_name, search_dirs) is not None:
        return None
    if importlib.util.find_spec(module_name.split(".")[0]) is not None:
        return None
    where = ", ".join(str(d) for d in search_dirs)
    return f"no module '{module_name}' in {where} nor among installed packages"
