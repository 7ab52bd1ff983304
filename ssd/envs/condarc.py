"""``envs_dirs`` from a ``.condarc`` file, parsed by hand (no YAML dependency).

Only the forms conda documents for this key are understood: a block list
(``envs_dirs:`` followed by ``- path`` lines), a flow list
(``envs_dirs: [a, b]``) and, leniently, a single scalar. ``envs_path`` is
conda's alias of the same key. Anything else in the file is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["parse_envs_dirs", "read_envs_dirs"]

_KEY = re.compile(r"^(envs_dirs|envs_path)\s*:(.*)$")
_ITEM = re.compile(r"^\s*-\s+(.*)$")
MAX_CONDARC_BYTES = 1 << 20


def _scalar(text: str) -> str:
    """A YAML scalar without its comment and quotes."""
    text = text.strip()
    if text[:1] in {"'", '"'}:
        quote = text[0]
        end = text.find(quote, 1)
        return text[1:end] if end > 0 else text[1:]
    return re.split(r"\s#", text, maxsplit=1)[0].strip()


def _flow(text: str) -> list[str]:
    """The items of a flow list ``[a, 'b', "c"]``."""
    inner = text.strip()[1:]
    inner = inner[: inner.rfind("]")] if "]" in inner else inner
    return [item for item in (_scalar(part) for part in inner.split(",")) if item]


def parse_envs_dirs(text: str) -> list[str]:
    """The ``envs_dirs`` entries of a condarc text, in order; empty when the key is absent."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _KEY.match(line)
        if match is None:
            continue
        rest = _scalar(match.group(2)) if not match.group(2).strip().startswith("[") else match.group(2).strip()
        if rest.startswith("["):
            return _flow(rest)
        if rest:
            return [rest]
        return _block(lines[index + 1 :])
    return []


def _block(lines: list[str]) -> list[str]:
    """The ``- item`` lines that follow a key, up to the first line that is not one."""
    items: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ITEM.match(line)
        if match is None:
            break
        value = _scalar(match.group(1))
        if value:
            items.append(value)
    return items


def read_envs_dirs(path: Path) -> list[str]:
    """``envs_dirs`` of the condarc at *path*; empty when it is missing, unreadable or too large."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONDARC_BYTES + 1)
    except OSError:
        return []
    if len(data) > MAX_CONDARC_BYTES:
        return []
    return parse_envs_dirs(data.decode("utf-8", errors="replace"))
