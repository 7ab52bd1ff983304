"""Checks for what a client may ask the env worker to create or install: names, package specs, Python versions.

Each check returns the value to use (a package spec comes back in its normalized
form) or raises ``ValueError`` with a message that names the problem, so the
worker can pass it on to a person unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ssd.errors import ErrorCode, SSDError

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_SPEC_LENGTH",
    "EnvRefused",
    "env_name",
    "known_prefix",
    "new_prefix",
    "package_spec",
    "package_specs",
    "python_interpreter",
    "python_version",
    "removable_prefix",
]

MAX_NAME_LENGTH = 64
MAX_SPEC_LENGTH = 200

# Characters a shell, a glob or a conda/pip command line gives a meaning to.
SHELL_METACHARACTERS = frozenset("|&;<>()$`\\\"'*?[]{}#~!%^=,:@")
_NAME_ALLOWED = re.compile(r"[A-Za-z0-9._+-]+")
_PYTHON_VERSION = re.compile(r"[23](?:\.\d{1,2}(?:\.\d{1,3})?)?")


class EnvRefused(SSDError, ValueError):
    """The environment may not be touched: not discovered, a symlink, not writable, missing or already there."""

    code = ErrorCode.ENV_REFUSED


def _refuse_control(what: str, value: str) -> None:
    """Raise when *value* holds NUL or another control character."""
    for char in value:
        if char == "\0":
            raise ValueError(f"{what} contains a NUL character")
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise ValueError(f"{what} contains a control character ({ord(char):#04x})")


def env_name(name: str) -> str:
    """An environment name that is safe as a directory name and as a command-line argument."""
    if not name:
        raise ValueError("environment name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"environment name is too long ({len(name)} characters, at most {MAX_NAME_LENGTH})")
    _refuse_control("environment name", name)
    if any(char.isspace() for char in name):
        raise ValueError("environment name contains whitespace")
    if "/" in name:
        raise ValueError("environment name contains '/'")
    if ".." in name or name == ".":
        raise ValueError("environment name contains '..' or is '.'")
    if name.startswith("-"):
        raise ValueError("environment name starts with '-'")
    bad = sorted({char for char in name if char in SHELL_METACHARACTERS})
    if bad:
        raise ValueError(f"environment name contains shell metacharacters: {''.join(bad)}")
    if not _NAME_ALLOWED.fullmatch(name):
        raise ValueError("environment name may use only letters, digits and . _ + -")
    return name


def package_spec(spec: str) -> str:
    """A PEP 508 requirement by name (no URL, path or marker), in its normalized form."""
    if not spec or not spec.strip():
        raise ValueError("package spec is empty")
    if len(spec) > MAX_SPEC_LENGTH:
        raise ValueError(f"package spec is too long ({len(spec)} characters, at most {MAX_SPEC_LENGTH})")
    _refuse_control("package spec", spec)
    if spec.lstrip().startswith("-"):
        raise ValueError(f"package spec {spec!r} starts with '-' (options are not accepted)")
    if "@" in spec or "/" in spec or "\\" in spec:
        raise ValueError(f"package spec {spec!r} is a URL, a path or a direct reference; give a name and versions")
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        raise ValueError(f"package spec {spec!r} is not a valid requirement: {exc}") from None
    if requirement.url is not None:
        raise ValueError(f"package spec {spec!r} is a direct reference; give a name and versions")
    if requirement.marker is not None:
        raise ValueError(f"package spec {spec!r} has an environment marker; markers are not accepted")
    return str(requirement)


def python_version(version: str) -> str:
    """A Python version to create an environment with: ``3``, ``3.12`` or ``3.12.1``."""
    if not _PYTHON_VERSION.fullmatch(version):
        raise ValueError(f"Python version {version[:20]!r} is not of the form 3, 3.12 or 3.12.1")
    return version


def package_specs(specs: Sequence[str]) -> list[str]:
    """Every spec of *specs* checked by ``package_spec``, normalized."""
    return [package_spec(spec) for spec in specs]


def python_interpreter(python: str | None) -> str:
    """The interpreter to build a venv with: an absolute path, a version (``3.12`` -> python3.12) or python3."""
    if python is not None and os.path.isabs(python):
        if not os.path.isfile(python) or not os.access(python, os.X_OK):
            raise EnvRefused(f"{python} is not an executable file")
        return python
    name = "python3" if python is None else "python" + ".".join(python_version(python).split(".")[:2])
    found = shutil.which(name)
    if found is None:
        raise EnvRefused(f"no {name} found on PATH")
    return found


def new_prefix(prefix: str | Path, *, create: bool = False) -> Path:
    """*prefix* made absolute, provided nothing (not even a dangling link) is there yet; made empty if *create*."""
    path = Path(os.path.abspath(prefix))
    try:
        if create:
            path.mkdir()
        elif os.path.lexists(path):
            raise FileExistsError(path)
    except FileExistsError:
        raise EnvRefused(f"{path} already exists") from None
    except FileNotFoundError:
        raise EnvRefused(f"{path.parent} does not exist") from None
    return path


def known_prefix(prefix: str | Path, known: Collection[str | Path]) -> Path:
    """*prefix* made absolute, if discovery found it, it is a real directory (no symlink) and it is writable."""
    path = Path(os.path.abspath(prefix))
    if path not in {Path(os.path.abspath(p)) for p in known}:
        raise EnvRefused(f"{path} is not an environment that discovery found")
    if path.is_symlink():
        raise EnvRefused(f"{path} is a symbolic link")
    if not path.is_dir():
        raise EnvRefused(f"{path} is not a directory")
    if not os.access(path, os.W_OK):
        raise EnvRefused(f"{path} is not writable by you")
    return path


def removable_prefix(prefix: str | Path, known: Collection[str | Path]) -> Path:
    """A known prefix that is an environment (not a conda install's root) in a folder the user can write."""
    path = known_prefix(prefix, known)
    if not (path / "pyvenv.cfg").is_file() and not (path / "conda-meta" / "history").is_file():
        raise EnvRefused(f"{path} has neither pyvenv.cfg nor conda-meta/history")
    if (path / "condabin").is_dir() or (path / "envs").is_dir():
        raise EnvRefused(f"{path} is the root prefix of a conda install")
    if not os.access(path.parent, os.W_OK):
        raise EnvRefused(f"{path.parent} is not writable by you")
    return path
