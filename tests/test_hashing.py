"""Canonical JSON and content hashes: equal values hash equally whatever the order."""

import pytest

from optimize.hashing import canonical_json, hash_tree, hash_value


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]}) == canonical_json(
        {"a": [1, {"x": 1, "y": 2}], "b": 1}
    )


def test_canonical_json_rejects_unhashable_values():
    with pytest.raises(TypeError):
        canonical_json({"a": object()})


def test_tree_hash_covers_names_and_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    first = hash_tree(tmp_path / "a")
    (tmp_path / "a" / "x.bin").write_bytes(b"2")
    assert hash_tree(tmp_path / "a") != first
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert hash_tree(tmp_path / "a") not in (first,)
    assert hash_value([1, 2]) != hash_value([2, 1])
