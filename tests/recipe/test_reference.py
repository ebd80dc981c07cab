"""The recipe reference in docs/ is generated from the schema and must match it."""

import json

from optimize.recipe.reference import json_schema, markdown
from tests.conftest import REPO


def test_committed_reference_matches_the_schema():
    committed = (REPO / "docs" / "recipe-reference.md").read_text()
    assert committed == markdown(), "docs/recipe-reference.md is stale: run `make docs`"


def test_json_schema_is_valid_json_and_forbids_unknown_keys():
    schema = json.loads(json_schema())
    assert schema["additionalProperties"] is False
    assert {"name", "model"} <= set(schema["required"])
