"""The configuration's reference: every key with its default and description, and the commented default file."""

from __future__ import annotations

from typing import Any

import msgspec

from ssd.config import SECTIONS
from ssd.configtypes import fields_of

__all__ = ["default_toml", "reference"]


def reference() -> list[tuple[str, str, Any, str]]:
    """Return (section, key, default, description) for every configuration key."""
    rows = []
    for section, model in SECTIONS.items():
        for field in fields_of(model):
            extra = getattr(field.type, "extra_json_schema", None) or {}
            default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
            rows.append((section, field.name, default, str(extra.get("description", ""))))
    return rows


def default_toml() -> str:
    """Render a commented configuration file holding every key at its default."""
    lines = ["# ssd configuration. Every key is shown at its default; see `ssd config`.", ""]
    current = ""
    for section, key, default, text in reference():
        if section != current:
            if current:
                lines.append("")
            lines.append(f"[{section}]")
            current = section
        lines.append(f"# {text}")
        lines.append(f"# {key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
