"""The README against the code: its measurement claims are docs/measurement.md's word for word,
and its Commands table lists every command with every option."""

from __future__ import annotations

import re

import click
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


def _commands_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme[readme.index("## Commands") : readme.index("## What a run produces")]


def _readme_command_rows() -> dict[str, str]:
    """Each command's usage cell, with the table's escaped `\\|` read back as `|`."""
    rows = [line for line in _commands_section().splitlines() if line.startswith("| `optimize ")]
    return {row.split()[2].rstrip("`"): row.split(" | ")[0].replace("\\|", "|") for row in rows}


def _usage(name: str) -> list[str]:
    """Every argument and option of `optimize NAME` as its --help shows them: RECIPE, [RUN],
    --target NAME, --format [json|markdown], --quiet."""
    command = main.commands[name]
    context = click.Context(command, info_name=name, parent=click.Context(main, info_name="optimize"))
    return [
        param.make_metavar(context)
        if isinstance(param, click.Argument)
        else param.get_help_record(context)[0]
        for param in command.params
    ]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_and_a_readme_row_naming_its_options(name):
    """As sqlite-utils checks its docs: a new command, argument or option shows up in the README,
    as --help shows it, or fails here; --help itself is said once below the table."""
    command = main.commands[name]
    result = CliRunner().invoke(main, [name, "--help"])
    shown = " ".join(result.output.split())
    assert result.exit_code == 0 and command.help and command.help.strip() in shown
    rows = _readme_command_rows()
    assert name in rows, f"README's Commands table has no row for `optimize {name}`"
    for usage in _usage(name):
        assert usage in shown, f"`optimize {name} --help` does not show {usage}"
        assert usage in rows[name], f"{usage} of `optimize {name}` is not in its README row"
    options = {opt for param in command.params for opt in param.opts if opt.startswith("--")}
    stale = set(re.findall(r"--[a-z][a-z-]*", rows[name])) - options
    assert not stale, f"README's row for `optimize {name}` names options it does not have: {stale}"


def test_the_readme_lists_no_command_that_does_not_exist_and_names_the_group_options():
    assert set(_readme_command_rows()) <= set(main.commands)
    for param in main.get_params(click.Context(main, info_name="optimize")):  # --version, --help
        assert any(f"{opt}`" in _commands_section() for opt in param.opts), param.opts


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
