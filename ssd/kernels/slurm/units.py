"""Slurm's time and memory notations, read strictly and written back."""

from __future__ import annotations

import re

__all__ = ["format_duration", "format_memory", "parse_duration", "parse_memory"]

# Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (sbatch(1), "-t, --time").
_DURATION = re.compile(
    r"(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"  # D-H, D-H:M, D-H:M:S
    r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?"  # M, M:S, H:M:S
)
_MEMORY = re.compile(r"(?P<number>\d+)(?P<unit>[KMGT]?)B?", re.IGNORECASE)
_MIB_PER_UNIT = {"K": 1 / 1024, "M": 1, "": 1, "G": 1024, "T": 1024 * 1024}


def parse_duration(text: str) -> int:
    """Seconds of a Slurm time (``90``, ``1:30:00``, ``2-12``); ValueError naming the accepted forms."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a Slurm time (minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S)")
    if match["days"] is not None:
        days, hours = int(match["days"]), int(match["dh"])
        return ((days * 24 + hours) * 60 + int(match["dm"] or 0)) * 60 + int(match["ds"] or 0)
    if match["c"] is not None:
        return (int(match["a"]) * 60 + int(match["b"])) * 60 + int(match["c"])
    if match["b"] is not None:
        return int(match["a"]) * 60 + int(match["b"])
    return int(match["a"]) * 60


def format_duration(seconds: int) -> str:
    """A duration in Slurm's ``D-HH:MM:SS`` (days only when there are some)."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def parse_memory(text: str) -> int:
    """MiB of a Slurm memory size (``4096``, ``512M``, ``16G``; no unit means MiB); ValueError when malformed."""
    match = _MEMORY.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory size (a number with K, M, G or T; no unit means M)")
    mib = int(match["number"]) * _MIB_PER_UNIT[match["unit"].upper()]
    return max(1, round(mib)) if mib else 0


def format_memory(mib: int) -> str:
    """A memory size for ``sbatch --mem`` (MiB with its unit)."""
    return f"{mib}M"
