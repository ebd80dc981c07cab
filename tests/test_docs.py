"""The README against the code: its measurement claims are docs/measurement.md's word for word,
and its Commands table lists every command with every option."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from optimize.cli import main
from tests.conftest import REPO


def _paragraphs(text: str) -> list[str]:
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def test_readme_measurement_section_quotes_the_measurement_doc():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Numbers you can trust") : readme.index("### MLflow")]
    doc = (REPO / "docs" / "measurement.md").read_text()
    summary = doc[doc.index("## In short") : doc.index("## The three models")]
    claims = _paragraphs(summary)[1:]  # without the heading
    assert claims and all(claim in _paragraphs(section) for claim in claims)


def _readme_command_rows() -> dict[str, str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Commands") : readme.index("## What a run produces")]
    rows = [line for line in section.splitlines() if line.startswith("| `optimize ")]
    return {row.split()[2].rstrip("`"): row.split(" | ")[0] for row in rows}


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_and_a_readme_row_naming_its_options(name):
    """As sqlite-utils checks its docs: a new command or option shows up in the README or fails here."""
    command = main.commands[name]
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0 and command.help and command.help.strip() in " ".join(result.output.split())
    rows = _readme_command_rows()
    assert name in rows, f"README's Commands table has no row for `optimize {name}`"
    documented_once = {"--help", "--debug", "-h"}
    for option in (opt for param in command.params for opt in param.opts if opt.startswith("--")):
        assert option in documented_once or option in rows[name], (
            f"{option} of `optimize {name}` is not in its README row"
        )


def test_the_readme_lists_no_command_that_does_not_exist():
    assert set(_readme_command_rows()) <= set(main.commands)


def test_the_architecture_doc_shows_the_real_diff_that_adds_a_quantization_method():
    doc = (REPO / "docs" / "architecture.md").read_text()
    diff = doc[doc.index("```diff\n") + len("```diff\n") :].split("\n```", 1)[0]
    new_file, init = diff.split("--- a/optimize/quantization/__init__.py\n")
    added = [line[1:] for line in new_file.splitlines()[3:]]
    assert added == (REPO / "optimize" / "quantization" / "fp16.py").read_text().splitlines()
    hunk = init.splitlines()[2:]
    start = int(init.splitlines()[1].split()[2].split(",")[0].lstrip("+"))  # the new side
    actual = (REPO / "optimize" / "quantization" / "__init__.py").read_text().splitlines()
    assert [line[1:] for line in hunk] == actual[start - 1 : start - 1 + len(hunk)]
