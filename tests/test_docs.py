"""The README's claims about measurement are docs/measurement.md's, word for word."""

from __future__ import annotations

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
