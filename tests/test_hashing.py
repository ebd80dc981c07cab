"""Cache keys: equal inputs give equal keys whatever the order; any change gives a new key."""

import pytest

from optimize.hashing import canonical_json, hash_tree, hash_value, stage_cache_key

BASE = dict(
    input_hash="a" * 64,
    stage_type="train",
    params={"epochs": 4, "lr": 0.002},
    data_fingerprints={"train": "t", "eval": "e"},
    library_versions={"torch": "2.14.1"},
    extra={"measure": 1},
)


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]}) == canonical_json(
        {"a": [1, {"x": 1, "y": 2}], "b": 1}
    )


def test_canonical_json_rejects_unhashable_values():
    with pytest.raises(TypeError):
        canonical_json({"a": object()})


def test_key_is_stable_and_order_independent():
    reordered = dict(BASE, params={"lr": 0.002, "epochs": 4}, data_fingerprints={"eval": "e", "train": "t"})
    assert stage_cache_key(**BASE) == stage_cache_key(**reordered)


@pytest.mark.parametrize(
    "change",
    [
        {"input_hash": "b" * 64},
        {"stage_type": "distill"},
        {"params": {"epochs": 5, "lr": 0.002}},
        {"data_fingerprints": {"train": "t2", "eval": "e"}},
        {"library_versions": {"torch": "2.15.0"}},
        {"extra": {"measure": 2}},
    ],
    ids=["input", "stage", "params", "data", "libraries", "extra"],
)
def test_every_component_changes_the_key(change):
    assert stage_cache_key(**{**BASE, **change}) != stage_cache_key(**BASE)


def test_tree_hash_covers_names_and_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    first = hash_tree(tmp_path / "a")
    (tmp_path / "a" / "x.bin").write_bytes(b"2")
    assert hash_tree(tmp_path / "a") != first
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert hash_tree(tmp_path / "a") not in (first,)
    assert hash_value([1, 2]) != hash_value([2, 1])
