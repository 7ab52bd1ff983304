"""The README's configuration reference is the config model's: every key, its default, its meaning.

The table between the markers is ``ssd config --markdown``; after changing a key, paste that in.
"""

from __future__ import annotations

from pathlib import Path

from ssd import configdoc
from ssd.cli import config_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def readme_table() -> str:
    """The text between the markers."""
    text = README.read_text()
    assert START in text, f"README.md has no {START} marker"
    return text.split(START, 1)[1].split(END, 1)[0].strip() + "\n"


def test_readme_table_is_the_config_model() -> None:
    """The README table equals `ssd config --markdown` (regenerate it when a key changes)."""
    assert readme_table() == config_markdown(), "README config reference is stale: paste `ssd config --markdown`"


def test_every_key_is_listed_with_its_default() -> None:
    """Each (section, key) of the model appears once, in its own row."""
    rows = [line for line in readme_table().splitlines() if line.startswith("| `")]
    listed = [row.split("`")[1] for row in rows]
    assert listed == [f"{section}.{key}" for section, key, _, _ in configdoc.reference()]
