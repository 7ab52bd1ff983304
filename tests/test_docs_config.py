"""docs/configuration.md's reference is the config model's: every key, its default, its meaning.

The table between the markers is ``ssd config --markdown``; after changing a key, paste that in.
"""

from __future__ import annotations

from pathlib import Path

from ssd import configdoc
from ssd.cli import config_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def reference_table() -> str:
    """The text between the markers."""
    text = PAGE.read_text()
    assert START in text, f"docs/configuration.md has no {START} marker"
    return text.split(START, 1)[1].split(END, 1)[0].strip() + "\n"


def test_reference_table_is_the_config_model() -> None:
    """The table equals `ssd config --markdown` (regenerate it when a key changes)."""
    assert reference_table() == config_markdown(), (
        "docs/configuration.md's reference is stale: paste `ssd config --markdown` between the markers"
    )


def test_every_key_is_listed_with_its_default() -> None:
    """Each (section, key) of the model appears once, in its own row."""
    rows = [line for line in reference_table().splitlines() if line.startswith("| `")]
    listed = [row.split("`")[1] for row in rows]
    assert listed == [f"{section}.{key}" for section, key, _, _ in configdoc.reference()]


def test_the_table_lives_in_one_place() -> None:
    """README.md no longer carries a copy that nothing keeps in sync."""
    readme = PAGE.parents[1] / "README.md"
    assert START not in readme.read_text(), "README.md has its own config table: link docs/configuration.md instead"
