"""What an environment holds, read from package metadata on disk (never by running its Python).

Sources, in order of trust: ``*.dist-info/METADATA`` in site-packages (what
Python will import), then ``conda-meta/NAME-VERSION-BUILD.json`` (conda's
record), then ``pyvenv.cfg`` and the ``lib/pythonX.Y`` folder for Python itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from ssd.envs.compat import parse_version

__all__ = [
    "Kind",
    "PrefixFacts",
    "conda_versions",
    "dist_versions",
    "normalize",
    "read_metadata_header",
    "read_prefix",
    "site_packages_dirs",
    "venv_python_version",
]

Kind = Literal["conda", "venv"]
WANTED = frozenset({"python", "spyder-kernels", "ipykernel", "ipython"})
MAX_HEADER_BYTES = 64 * 1024
_LIB_PYTHON = re.compile(r"^python(\d+\.\d+)t?$")


@dataclass(frozen=True)
class PrefixFacts:
    """What one prefix is and holds, as found on disk."""

    kind: Kind
    python: str | None
    spyder_kernels: str | None
    ipykernel: str | None
    has_condabin: bool
    ipython: str | None = None


class _CondaRecord(msgspec.Struct):
    """The two fields of a conda-meta record we need; the rest (files, paths_data) is skipped."""

    name: str
    version: str


_RECORD_DECODER = msgspec.json.Decoder(_CondaRecord)


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form (``Spyder_Kernels`` -> ``spyder-kernels``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_key(version: str) -> tuple[int, ...]:
    return parse_version(version) or ()


def conda_versions(conda_meta: Path) -> dict[str, str]:
    """Versions of the wanted packages from ``conda-meta/*.json`` (name and version fields)."""
    found: dict[str, str] = {}
    try:
        entries = os.listdir(conda_meta)
    except OSError:
        return found
    for entry in entries:
        parts = entry.removesuffix(".json").rsplit("-", 2)
        if not entry.endswith(".json") or len(parts) != 3 or normalize(parts[0]) not in WANTED:
            continue
        try:
            record = _RECORD_DECODER.decode((conda_meta / entry).read_bytes())
        except (OSError, msgspec.DecodeError):
            continue
        name = normalize(record.name)
        if name in WANTED and _version_key(record.version) >= _version_key(found.get(name, "")):
            found[name] = record.version
    return found


def read_metadata_header(path: Path) -> tuple[str, str] | None:
    """``(Name, Version)`` from the header of a METADATA or PKG-INFO file; None if absent."""
    try:
        with path.open("rb") as fh:
            head = fh.read(MAX_HEADER_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in head.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key in {"Name", "Version"}:
            fields.setdefault(key, value.strip())
    if "Name" in fields and "Version" in fields:
        return fields["Name"], fields["Version"]
    return None


def dist_versions(site_packages: Path) -> dict[str, str]:
    """Versions of the wanted packages from ``*.dist-info/METADATA`` (or ``*.egg-info/PKG-INFO``)."""
    found: dict[str, str] = {}
    try:
        entries = os.listdir(site_packages)
    except OSError:
        return found
    for entry in entries:
        stem, _, suffix = entry.rpartition(".")
        if suffix not in {"dist-info", "egg-info"} or normalize(stem.split("-", 1)[0]) not in WANTED:
            continue
        header = read_metadata_header(site_packages / entry / ("METADATA" if suffix == "dist-info" else "PKG-INFO"))
        if header is None:
            continue
        name = normalize(header[0])
        if name in WANTED and _version_key(header[1]) >= _version_key(found.get(name, "")):
            found[name] = header[1]
    return found


def site_packages_dirs(prefix: Path) -> list[Path]:
    """``lib/pythonX.Y/site-packages`` folders of *prefix*, newest Python first."""
    try:
        names = os.listdir(prefix / "lib")
    except OSError:
        return []
    versions = [name for name in names if _LIB_PYTHON.match(name)]
    versions.sort(key=lambda name: _version_key(name.removeprefix("python")), reverse=True)
    return [prefix / "lib" / name / "site-packages" for name in versions]


def venv_python_version(pyvenv_cfg: Path) -> str | None:
    """The Python version recorded in ``pyvenv.cfg`` (``version_info`` or ``version``)."""
    try:
        text = pyvenv_cfg.read_text(errors="replace")
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    raw = values.get("version_info") or values.get("version")
    parsed = parse_version(raw) if raw else None
    return ".".join(map(str, parsed[:3])) if parsed else None


def read_prefix(prefix: Path, kind: Kind) -> PrefixFacts:
    """Everything discovery reports about *prefix* that comes from its files."""
    packages = conda_versions(prefix / "conda-meta") if kind == "conda" else {}
    site_packages = site_packages_dirs(prefix)
    for folder in reversed(site_packages):
        packages.update({name: version for name, version in dist_versions(folder).items() if name != "python"})
    python = packages.get("python") or venv_python_version(prefix / "pyvenv.cfg")
    if python is None and site_packages:
        python = site_packages[0].parent.name.removeprefix("python").removesuffix("t")
    return PrefixFacts(
        kind=kind,
        python=python,
        spyder_kernels=packages.get("spyder-kernels"),
        ipykernel=packages.get("ipykernel"),
        has_condabin=(prefix / "condabin").is_dir(),
        ipython=packages.get("ipython"),
    )
