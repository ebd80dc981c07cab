"""Fingerprints of Python code, so that a cache key changes when the code behind a result changes.

The granularity is the module: a key covers the static import closure of the modules that do the
work, each module by a digest of its normalised syntax tree. Comments, blank lines, formatting and
docstrings therefore leave a key alone, while any change to what the code does changes it, and an
edit to a module outside the closure re-runs nothing.

How the closure is followed:
- every `import a.b` and `from a import b`, anywhere in a file (heavy libraries are imported lazily
  inside functions), except inside `if TYPE_CHECKING:` blocks, whose imports never run;
- `from a.b import c` follows the module `a.b.c` when it is one, else the module `a.b`;
  `import a.b.c` follows `a.b.c` only; relative imports resolve against the importing package;
- a parent package's `__init__.py` is not added when one of its submodules is imported, only when
  the package itself is imported (`from optimize.registries import STAGES`). A package's `__init__`
  registers its members (`from optimize.stages import distill, export`): those imports of its own
  submodules are not followed, because a member depends on the registry, not on its siblings.
  An `__init__` that takes a name out of its own submodule (`from pkg.sub import Thing`) does use
  that submodule's code, so that import is followed;
- names that resolve to no file under the search folders (standard library, installed packages,
  missing modules) are left out: installed libraries are covered by their versions instead.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from optimize.hashing import hash_value

_PACKAGE = "optimize"
_PROJECT_DIR = Path(__file__).resolve().parent.parent
_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _version(path: Path) -> tuple[str, int, int]:
    """A file as of now: its reads below are remembered per version, not per name (a user's file
    may change between two runs in one process; re-parsing ~200 modules per run costs seconds)."""
    stat = Path(path).stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def source_digest(path: Path) -> str:
    """Digest of what a module does: its syntax tree without docstrings, or its bytes if it does not parse."""
    return _source_digest(_version(path))


@functools.lru_cache(maxsize=4096)
def _source_digest(version: tuple[str, int, int]) -> str:
    source = Path(version[0]).read_bytes()
    tree = _parse(source)
    if tree is None:
        return hashlib.sha256(source).hexdigest()
    _strip_docstrings(tree)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"  # ast dumps differ between versions
    return hashlib.sha256(f"{version}\0{ast.dump(tree, include_attributes=False)}".encode()).hexdigest()


def _parse(source: bytes) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, _DOCSTRING_OWNERS) and node.body and _is_docstring(node.body[0]):
            node.body = node.body[1:] or [ast.Pass()]


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def module_closure(
    roots: Iterable[str], search_dirs: Sequence[Path], prefix: str | None = None
) -> dict[str, Path]:
    """Dotted module name → source file for the roots and every module they import, found under search_dirs."""
    folders = [Path(folder) for folder in search_dirs]
    pending: list[tuple[str, Path]] = []
    for root in roots:
        path = _module_file(root, folders)
        if path is None:
            raise ValueError(f"module '{root}' is not found in {', '.join(map(str, folders)) or 'no folder'}")
        pending.append((root, path))
    closure: dict[str, Path] = {}
    while pending:
        name, path = pending.pop()
        if name in closure:
            continue
        closure[name] = path
        for imported in _imported_modules(name, path, folders):
            if imported not in closure and _within(imported, prefix):
                found = _module_file(imported, folders)
                if found is not None:
                    pending.append((imported, found))
    return closure


def _within(name: str, prefix: str | None) -> bool:
    return prefix is None or name == prefix or name.startswith(prefix + ".")


def _module_file(name: str, folders: Sequence[Path]) -> Path | None:
    """A package wins over a module of the same name, as in Python's own import system."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        return None
    relative = Path(*name.split("."))
    for folder in folders:
        for candidate in (folder / relative / "__init__.py", folder / relative.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


def _imported_modules(name: str, path: Path, folders: Sequence[Path]) -> frozenset[str]:
    return _imports_of(name, _version(path), tuple(folders))


@functools.lru_cache(maxsize=4096)
def _imports_of(name: str, version: tuple[str, int, int], folders: tuple[Path, ...]) -> frozenset[str]:
    path = Path(version[0])
    tree = _parse(path.read_bytes())
    if tree is None:
        return frozenset()
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(
                alias.name for alias in node.names if not (is_package and alias.name.startswith(name + "."))
            )
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_module(node, package)
            for alias in node.names if base else ():
                member = f"{base}.{alias.name}"
                if alias.name != "*" and _module_file(member, folders) is not None:
                    if not (is_package and base == name):  # a package registering its own members
                        found.add(member)
                else:
                    found.add(base)
    return frozenset(found)


def _absolute_module(node: ast.ImportFrom, package: str) -> str | None:
    if node.level == 0:
        return node.module
    parts = package.split(".") if package else []
    if node.level - 1 >= len(parts):
        return None
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Like ast.walk, but without the bodies of `if TYPE_CHECKING:` blocks (their `else` does run)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def code_fingerprint(*modules: str) -> str:
    """Fingerprint of this project's code behind `modules`: their import closure within the package."""
    return _project_fingerprint(tuple(sorted(set(modules))))


@functools.cache
def _project_fingerprint(modules: tuple[str, ...]) -> str:
    """Cached per process: keys are computed many times per run and the installed code does not change."""
    closure = module_closure(modules, [_PROJECT_DIR], prefix=_PACKAGE)
    return hash_value(sorted([name, source_digest(path)] for name, path in closure.items()))


def local_code_fingerprint(module: str, search_dirs: Sequence[Path]) -> dict[str, str] | None:
    """Digests of a user's module tree, or None when it is not in search_dirs (an installed package).

    Not cached: a user's files may change between two runs in one process.
    """
    folders = [Path(folder) for folder in search_dirs]
    if _module_file(module, folders) is None:
        return None
    return {name: source_digest(path) for name, path in sorted(module_closure([module], folders).items())}


def user_code_fingerprint(module: str, search_dirs: Sequence[Path]) -> dict[str, str]:
    """Digests of the module tree behind a recipe's `python:` reference: found in search_dirs (the
    recipe's folder), else where it is installed, within its own top-level package (an editable
    install changes without a new version). Empty when the module cannot be found."""
    local = local_code_fingerprint(module, search_dirs)
    if local is not None:
        return local
    import importlib.util

    top = module.split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.origin:
        return {}
    origin = Path(spec.origin)
    root = origin.parent.parent if spec.submodule_search_locations else origin.parent
    closure = module_closure([module], [root], prefix=top)
    return {name: source_digest(path) for name, path in sorted(closure.items())}
