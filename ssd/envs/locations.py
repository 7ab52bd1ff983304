"""Where conda, mamba and micromamba installs and their configuration usually live: kept here, in one place."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "CONDARC_FILES",
    "DEFAULT_ENVS_DIRS",
    "DEFAULT_VENV_DIRS",
    "ENVIRONMENTS_TXT",
    "KNOWN_ROOTS",
    "env_var_dirs",
    "expand",
    "roots_from_environ",
]

# Root prefixes of installs made by their installers' defaults, per user and system wide.
KNOWN_ROOTS: tuple[str, ...] = (
    "~/miniconda3",
    "~/miniconda",
    "~/anaconda3",
    "~/anaconda",
    "~/miniforge3",
    "~/miniforge",
    "~/mambaforge",
    "~/micromamba",
    "~/.local/share/mamba",  # micromamba 2's default root prefix
    "/opt/conda",
    "/opt/miniconda3",
    "/opt/anaconda3",
    "/opt/miniforge3",
    "/opt/mambaforge",
    "/opt/micromamba",
    "/usr/local/conda",
    "/usr/local/miniconda3",
    "/usr/local/anaconda3",
    "/usr/local/miniforge3",
)

# conda's own search path (conda.base.constants.SEARCH_PATH), files only; {root} is each root found.
CONDARC_FILES: tuple[str, ...] = (
    "/etc/conda/.condarc",
    "/etc/conda/condarc",
    "/var/lib/conda/.condarc",
    "/var/lib/conda/condarc",
    "{root}/.condarc",
    "{root}/condarc",
    "~/.config/conda/.condarc",
    "~/.config/conda/condarc",
    "~/.conda/.condarc",
    "~/.conda/condarc",
    "~/.condarc",
)

# Where conda puts named environments when a root's own envs/ is not writable.
DEFAULT_ENVS_DIRS: tuple[str, ...] = ("~/.conda/envs",)
DEFAULT_VENV_DIRS: tuple[str, ...] = ("~/.virtualenvs", "~/venvs", "~/.venvs")
ENVIRONMENTS_TXT = "~/.conda/environments.txt"

_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")


def expand(path: str, home: Path, environ: Mapping[str, str]) -> Path | None:
    """*path* with ``~`` as *home* and ``$VAR`` from *environ*; None unless the result is absolute."""

    def variable(match: re.Match[str]) -> str:
        return environ.get(match.group(1).strip("{}"), match.group(0))

    text = _VARIABLE.sub(variable, path.strip())
    if text == "~" or text.startswith("~/"):
        text = str(home) + text[1:]
    result = Path(text)
    return result if result.is_absolute() else None


def roots_from_environ(environ: Mapping[str, str]) -> list[Path]:
    """Root prefixes named by ``$CONDA_EXE`` (its bin/ or condabin/ parent's parent) and ``$MAMBA_ROOT_PREFIX``."""
    roots: list[Path] = []
    exe = environ.get("CONDA_EXE", "")
    if exe.startswith("/"):
        path = Path(exe)
        if path.parent.name in {"bin", "condabin"}:
            roots.append(path.parent.parent)
    mamba = environ.get("MAMBA_ROOT_PREFIX", "")
    if mamba.startswith("/"):
        roots.append(Path(mamba))
    return roots


def env_var_dirs(environ: Mapping[str, str]) -> Iterable[str]:
    """``$CONDA_ENVS_PATH`` / ``$CONDA_ENVS_DIRS`` entries (colon-separated), which conda honours too."""
    for variable in ("CONDA_ENVS_DIRS", "CONDA_ENVS_PATH"):
        yield from (part for part in environ.get(variable, "").split(":") if part)
