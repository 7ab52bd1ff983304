"""How ssd-ctl prints: one JSON document with ``--json``, readable tables otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Output"]


class Output:
    """Writes results to stdout and diagnostics to stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def document(self, value: Any) -> None:
        """Print *value* as one JSON document (``--json``)."""
        sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def line(self, value: Any) -> None:
        """Print one JSON object on one line (streams such as ``watch --json``)."""
        sys.stdout.write(json.dumps(value, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def fields(self, title: str, rows: Iterable[tuple[str, Any]]) -> None:
        """Print a two-column key/value table."""
        table = Table(title=Text(title), show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows:
            table.add_row(Text(key), _text(value))
        self.out.print(table)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
        """Print a table with a header row."""
        table = Table(*columns, title=Text(title) if title else None, title_justify="left")
        for row in rows:
            table.add_row(*(_text(v) for v in row))
        self.out.print(table)

    def say(self, text: str) -> None:
        """Print a plain line for a person (stdout, not in --json mode)."""
        if not self.as_json:
            self.out.print(text, markup=False)

    def error(self, text: str) -> None:
        """Print an error for a person on stderr."""
        self.err.print(f"ssd-ctl: error: {text}", markup=False)


def _text(value: Any) -> Text:
    # Text, never markup: names and other strings come from servers and the network.
    return Text(_plain(value))


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)
