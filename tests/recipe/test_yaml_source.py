"""Safe YAML: line numbers per key, duplicate keys, alias bombs, merges, size and depth limits."""

import pytest

from optimize.recipe.yaml_source import MAX_BYTES, YamlProblem, parse_yaml


def test_lines_are_recorded_for_every_key_and_item():
    parsed = parse_yaml("a: 1\nb:\n  - x: 2\n  - 3\n")
    assert parsed.data == {"a": 1, "b": [{"x": 2}, 3]}
    assert parsed.lines[("a",)] == 1
    assert parsed.lines[("b", 0, "x")] == 3
    assert parsed.lines[("b", 1)] == 4


def test_duplicate_key_is_an_error_with_its_line():
    with pytest.raises(YamlProblem) as error:
        parse_yaml("a: 1\nb: 2\na: 3\n")
    assert error.value.line == 3 and "duplicate key 'a'" in str(error.value)


def test_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
    with pytest.raises(YamlProblem, match="alias bomb"):
        parse_yaml(bomb)


def test_recursive_alias_is_refused():
    with pytest.raises(YamlProblem):
        parse_yaml("a: &a [*a]\n")


def test_merge_keys_and_small_aliases_work():
    parsed = parse_yaml("base: &base {lr: 0.1, epochs: 2}\nrun:\n  <<: *base\n  epochs: 5\n")
    assert parsed.data["run"] == {"lr": 0.1, "epochs": 5}


def test_python_tags_are_not_constructed():
    with pytest.raises(YamlProblem):
        parse_yaml("a: !!python/object/apply:os.system ['echo pwned']\n")


def test_huge_document_is_refused():
    with pytest.raises(YamlProblem, match="KiB"):
        parse_yaml("a: " + "x" * (MAX_BYTES + 1))


def test_deep_nesting_is_refused():
    with pytest.raises(YamlProblem, match="deeper"):
        parse_yaml("a: " + "[" * 200 + "]" * 200)


def test_empty_document_is_none():
    assert parse_yaml("").data is None
