"""Fuzzing the recipe loader: malformed recipes (mutated valid ones, and arbitrary text) must end
in exit code 2 with one-line messages (or 0 when a mutation happens to stay valid), never in an
unhandled exception or a traceback."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimize.cli import main
from tests.conftest import tiny_recipe_dict

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["train", "export", "digits", "x86-cpu-onnxruntime", "../x", "python:a:b", ""]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_recipes(draw):
    recipe = copy.deepcopy(tiny_recipe_dict())
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(recipe) if p]
        path = draw(st.sampled_from(paths))
        parent = recipe
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
        else:
            parent.insert(path[-1], draw(VALUES))
        if not isinstance(recipe, dict) or not recipe:
            break
    return recipe


def _validate(text: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(text)
        return path, CliRunner().invoke(main, ["validate", str(path)])


def _assert_clean(path: Path, result) -> None:
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines and all(line.startswith("error: ") for line in lines), result.output
        assert all(str(path) in line for line in lines), result.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_recipes())
def test_mutated_recipes_fail_cleanly(recipe):
    path, result = _validate(yaml.safe_dump(recipe, allow_unicode=True))
    _assert_clean(path, result)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#%@`,?\n\t 0123456789.")), max_size=200))
def test_arbitrary_text_fails_cleanly(text):
    path, result = _validate(text)
    _assert_clean(path, result)
