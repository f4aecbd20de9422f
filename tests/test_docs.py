"""The README documents the vocabulary exactly as the code defines it."""

from pathlib import Path

from features.vocabulary import markdown_table


def test_readme_vocabulary_table_matches_the_code():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme
