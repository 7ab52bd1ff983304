"""The conda recipe (conda/meta.yaml) agrees with pyproject.toml: name, version, entry points,
run and host dependencies; its test section runs; the post-link script only writes the message.

No conda build tool can run here: conda-build is not published on PyPI (it comes from conda
channels, which this machine cannot reach) and rattler-build is a native binary from the same
channels or GitHub releases. So the recipe is rendered the way conda-build renders it (Jinja with
``load_file_data``, then YAML) and checked field by field; ``conda build conda/`` is the real build.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "conda"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# PyPI name -> conda-forge name, where they differ (none today; keep the table for the day one does).
CONDA_NAMES: dict[str, str] = {}


def load_file_data(filename: str, from_recipe_dir: bool = False, **_: Any) -> dict[str, Any]:
    """conda-build's Jinja helper, for TOML files relative to the recipe (or the source) folder."""
    base = RECIPE if from_recipe_dir else ROOT
    return tomllib.loads((base / filename).read_text())


def render() -> dict[str, Any]:
    """meta.yaml after Jinja and YAML, as conda-build sees it."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # YAML, not HTML
    text = env.from_string((RECIPE / "meta.yaml").read_text()).render(load_file_data=load_file_data, PYTHON="$PYTHON")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def conda_spec(requirement: str) -> tuple[str, SpecifierSet]:
    """A conda match spec ``name >=1.2`` as (normalized name, specifier)."""
    name, _, spec = requirement.partition(" ")
    return canonicalize_name(name), SpecifierSet(spec.replace(" ", ""))


def pypi_spec(requirement: str) -> tuple[str, SpecifierSet]:
    """A PEP 508 requirement as (conda name, normalized, specifier)."""
    parsed = Requirement(requirement)
    return canonicalize_name(CONDA_NAMES.get(parsed.name, parsed.name)), parsed.specifier


def test_name_version_and_noarch_come_from_pyproject() -> None:
    """package.name and package.version are pyproject's; the package is noarch python."""
    recipe = render()
    assert recipe["package"] == {"name": PYPROJECT["project"]["name"], "version": PYPROJECT["project"]["version"]}
    assert recipe["build"]["noarch"] == "python"
    assert recipe["about"]["summary"] == PYPROJECT["project"]["description"]


def test_entry_points_match_the_console_scripts() -> None:
    """build.entry_points lists exactly pyproject's [project.scripts]."""
    scripts = PYPROJECT["project"]["scripts"]
    assert sorted(render()["build"]["entry_points"]) == sorted(f"{k} = {v}" for k, v in scripts.items())


def test_run_dependencies_match_pyproject() -> None:
    """requirements.run: python per requires-python plus every dependency with the same bounds, nothing else."""
    run = dict(conda_spec(r) for r in render()["requirements"]["run"])
    assert run.pop("python") == SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert run == dict(pypi_spec(r) for r in PYPROJECT["project"]["dependencies"])


def test_host_has_the_build_backend() -> None:
    """requirements.host has pip, python and the build-system requirements."""
    host = dict(conda_spec(r) for r in render()["requirements"]["host"])
    assert "pip" in host
    assert host["python"] == SpecifierSet(PYPROJECT["project"]["requires-python"])
    for requirement in PYPROJECT["build-system"]["requires"]:
        name, spec = pypi_spec(requirement)
        assert host[name] == spec


def test_test_section_imports_and_runs_both_commands() -> None:
    """The recipe's tests import ssd and run `ssd --help` and `ssd-ctl --help`; both work here too."""
    test = render()["test"]
    assert "ssd" in test["imports"]
    assert {"ssd --help", "ssd-ctl --help"} <= set(test["commands"])
    bin_dir = Path(sys.executable).parent
    for command in test["commands"]:
        name, *args = command.split()
        result = subprocess.run([str(bin_dir / name), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
    for module in test["imports"]:
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=60)


@pytest.mark.parametrize("script", ["post-link.sh", "post-link.bat"])
def test_post_link_scripts_exist_for_every_platform(script: str) -> None:
    """conda wants post-link scripts for all platforms of a noarch package."""
    assert (RECIPE / script).is_file()


def test_post_link_tells_the_one_command_and_asks_nothing(tmp_path: Path) -> None:
    """post-link.sh writes the sudo command to $PREFIX/.messages.txt, prints nothing, reads no input."""
    script = RECIPE / "post-link.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    result = subprocess.run(
        ["/bin/sh", str(script)],
        env={**os.environ, "PREFIX": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == ""
    message = (tmp_path / ".messages.txt").read_text()
    assert f'sudo "{tmp_path}/bin/ssd" install --system' in message
