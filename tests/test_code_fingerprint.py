"""Code fingerprints: which modules a key covers, and which edits change it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optimize.code_fingerprint import code_fingerprint, local_code_fingerprint, module_closure, source_digest

PROJECT_DIR = Path(__file__).resolve().parent.parent

# A fake package: a registry in __init__, a lazy import inside a function, a type-only import,
# a relative import, an explicit import of a package __init__, and an unrelated module.
TREE = {
    "pkg/__init__.py": "from pkg.registry import REGISTRY\nfrom pkg import a, c  # registration\n",
    "pkg/registry.py": "REGISTRY = {}\n",
    "pkg/a.py": (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "from pkg import REGISTRY\n"
        "from . import helpers\n"
        "if TYPE_CHECKING:\n"
        "    from pkg import typed_only\n"
        "def run():\n"
        "    import pkg.b\n"
        "    return pkg.b.VALUE\n"
    ),
    "pkg/b.py": "from pkg.sub import thing\nVALUE = 1\n",
    "pkg/c.py": "VALUE = 2\n",
    "pkg/helpers.py": "import numpy\n",
    "pkg/typed_only.py": "X = 1\n",
    "pkg/sub/__init__.py": "from .inner import helper\nfrom . import sibling\n",
    "pkg/sub/thing.py": "from ..c import VALUE\nfrom other.lib import tool\n",
    "pkg/sub/inner.py": "helper = 1\n",
    "pkg/sub/sibling.py": "S = 1\n",
    "other/__init__.py": "",
    "other/lib.py": "tool = 1\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for relative, text in TREE.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def closure_names(root: str, folder: Path, prefix: str | None = None) -> set[str]:
    return set(module_closure([root], [folder], prefix=prefix))


def test_closure_follows_lazy_relative_and_explicit_package_imports(tree: Path) -> None:
    assert closure_names("pkg.a", tree) == {
        "pkg.a",
        "pkg",  # `from pkg import REGISTRY` imports the package itself
        "pkg.registry",
        "pkg.helpers",  # relative import
        "pkg.b",  # imported inside a function
        "pkg.sub.thing",  # `from pkg.sub import thing` is a module, so pkg.sub is not added
        "pkg.c",  # `from ..c import VALUE`, relative to pkg.sub
        "other.lib",
    }


def test_closure_maps_names_to_their_files(tree: Path) -> None:
    closure = module_closure(["pkg.a"], [tree])
    assert closure["pkg"] == tree / "pkg" / "__init__.py"
    assert closure["pkg.sub.thing"] == tree / "pkg" / "sub" / "thing.py"


def test_package_init_registration_is_not_followed_but_its_re_exports_are(tree: Path) -> None:
    assert closure_names("pkg.sub", tree) == {"pkg.sub", "pkg.sub.inner"}
    assert closure_names("pkg", tree) == {"pkg", "pkg.registry"}


def test_prefix_stops_at_foreign_packages(tree: Path) -> None:
    names = closure_names("pkg.a", tree, prefix="pkg")
    assert "other.lib" not in names
    assert {"pkg.b", "pkg.sub.thing", "pkg.c"} <= names


def test_unresolvable_root_raises(tree: Path) -> None:
    with pytest.raises(ValueError, match="pkg.missing"):
        module_closure(["pkg.missing"], [tree])


def digest_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "module.py"
    path.write_text(text)
    return source_digest(path)


BASE = '"""Doc."""\n\n\ndef f(x):\n    """Doc of f."""\n    return x + 1\n\n\nclass C:\n    """Doc of C."""\n'


@pytest.mark.parametrize(
    "edited",
    [
        BASE.replace("return x + 1", "return x + 1  # a comment"),  # comment
        "\n\n" + BASE + "\n\n",  # blank lines
        BASE.replace('"""Doc of f."""', '"""Another doc, longer."""'),  # docstring
        BASE.replace('"""Doc."""\n', ""),  # docstring removed
        BASE.replace('    """Doc of C."""', "    pass"),  # empty body after removing the docstring
        BASE.replace("def f(x):", "def f(\n    x,\n):").replace("x + 1", "(x + 1)"),  # formatting
        BASE.replace('"""Doc of f."""', "'''Doc of f.'''"),  # quote style
    ],
)
def test_edits_that_do_not_change_behaviour_keep_the_digest(tmp_path: Path, edited: str) -> None:
    assert digest_of(tmp_path, edited) == digest_of(tmp_path, BASE)


@pytest.mark.parametrize(
    "edited",
    [
        BASE.replace("x + 1", "x + 2"),  # a constant
        BASE.replace("    return x + 1", "    print(x)\n    return x + 1"),  # a statement
        BASE.replace("def f(x)", "def g(x)"),  # a name
    ],
)
def test_edits_that_change_behaviour_change_the_digest(tmp_path: Path, edited: str) -> None:
    assert digest_of(tmp_path, edited) != digest_of(tmp_path, BASE)


def test_unparsable_file_falls_back_to_its_bytes(tmp_path: Path) -> None:
    broken = digest_of(tmp_path, "def f(:\n")
    assert re.fullmatch(r"[0-9a-f]{64}", broken)
    assert digest_of(tmp_path, "def f(:  \n") != broken


def test_local_fingerprint_changes_only_with_imported_modules(tree: Path) -> None:
    before = local_code_fingerprint("pkg.a", [tree])
    assert before is not None and set(before) == closure_names("pkg.a", tree)

    (tree / "pkg" / "typed_only.py").write_text("X = 2\n")  # type-only import: unrelated
    (tree / "pkg" / "sub" / "sibling.py").write_text("S = 2\n")
    assert local_code_fingerprint("pkg.a", [tree]) == before

    (tree / "pkg" / "sub" / "thing.py").write_text(TREE["pkg/sub/thing.py"] + "EXTRA = 1\n")  # transitive
    after = local_code_fingerprint("pkg.a", [tree])
    assert after is not None and after != before
    assert after["pkg.sub.thing"] != before["pkg.sub.thing"]
    assert {name: digest for name, digest in after.items() if name != "pkg.sub.thing"} == {
        name: digest for name, digest in before.items() if name != "pkg.sub.thing"
    }


def test_local_fingerprint_is_none_outside_the_search_dirs(tree: Path, tmp_path: Path) -> None:
    assert local_code_fingerprint("json", [tree]) is None
    assert local_code_fingerprint("pkg.a", [tmp_path / "elsewhere"]) is None


def test_real_stage_closure_excludes_sibling_stages_and_the_cli() -> None:
    closure = module_closure(["optimize.stages.quantize"], [PROJECT_DIR], prefix="optimize")
    assert {"optimize.stages.quantize", "optimize.stages.base"} <= set(closure)
    assert not {"optimize.stages.prune", "optimize.stages.distill", "optimize.cli"} & set(closure)


def test_project_fingerprint_is_a_stable_digest() -> None:
    first = code_fingerprint("optimize.stages.quantize", "optimize.stages.base")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert code_fingerprint("optimize.stages.base", "optimize.stages.quantize") == first
