"""The package's shape: no import cycle between modules at import time, no module past the size
one reads in a sitting, and `import optimize` stays light (the API imports its work lazily)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "optimize"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


class _ImportTimeImports(ast.NodeVisitor):
    """Import statements that run when the module is imported: not in function bodies, not under
    `if TYPE_CHECKING:`."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_FunctionDef(self, node) -> None:
        pass

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        for child in node.orelse if "TYPE_CHECKING" in ast.unparse(node.test) else [*node.body, *node.orelse]:
            self.visit(child)

    def visit_Import(self, node) -> None:
        self.found.append(node)

    visit_ImportFrom = visit_Import


def import_time_edges(name: str) -> set[str]:
    """Modules of the package that `name` imports when it is imported."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    visitor = _ImportTimeImports()
    visitor.visit(ast.parse(path.read_text()))
    edges = set()
    for node in visitor.found:
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {edge for edge in edges if edge in MODULES and edge != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_edges_are_what_runs_at_import_time():
    assert "optimize.stages.prune" in import_time_edges("optimize.stages")  # registration
    assert "optimize.workflows.run" not in import_time_edges("optimize.api")  # lazy, inside run()


def test_no_import_cycle_between_modules_at_import_time():
    graph = {name: import_time_edges(name) for name in MODULES}
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_registries_do_not_import_their_members():
    """Members import optimize.registries; the registry finds them on first lookup."""
    assert import_time_edges("optimize.registries") == {"optimize.registry"}


def test_no_module_is_longer_than_one_reading():
    long = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_importing_optimize_imports_none_of_the_heavy_libraries():
    code = (
        "import sys, optimize; heavy = ('torch', 'onnx', 'onnxruntime', 'mlflow', 'nncf', 'openvino', 'pydantic');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
