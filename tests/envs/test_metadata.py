"""Reading versions from metadata on disk, the compatibility table and the condarc envs_dirs key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from envfixtures import conda_python_record, expected, heavy_venv, make_venv, site_packages

from ssd.envs.compat import kernels_spec_for, spyder_versions
from ssd.envs.condarc import parse_envs_dirs
from ssd.envs.metadata import conda_versions, dist_versions, read_metadata_header, read_prefix, venv_python_version


@pytest.mark.parametrize(
    ("kernels", "spyder"),
    [("3.1.6", ["6.1.x"]), ("3.0.0b9", ["6.0.x"]), ("2.5.2", ["5.5.x"]), ("2.4", ["5.4.x"]), ("2.0.0", [])],
)
def test_spyder_versions_from_the_table(kernels: str, spyder: list[str]) -> None:
    """spyder-kernels versions map to the Spyder series that accept them (2.0.0 predates 5.0's minimum)."""
    assert spyder_versions(kernels) == spyder


def test_spyder_versions_of_nothing_or_unknown() -> None:
    """No spyder-kernels, junk or a future series: no Spyder version."""
    assert spyder_versions(None) == spyder_versions("garbage") == spyder_versions("9.0.0") == []


def test_kernels_spec_for_a_spyder_version() -> None:
    """A Spyder version gives the spyder-kernels requirement to install; unknown series give None."""
    assert kernels_spec_for("6.1.2") == "spyder-kernels>=3.1.0,<3.2.0"
    assert kernels_spec_for("5.5") == "spyder-kernels>=2.5.0,<2.6.0"
    assert kernels_spec_for("7.0.0") is None
    assert kernels_spec_for("six") is None


@pytest.mark.parametrize(
    ("text", "dirs"),
    [
        ("envs_dirs:\n  - /a\n  - '~/b'  # comment\n\n  - \"/c d\"\npkgs_dirs:\n  - /p\n", ["/a", "~/b", "/c d"]),
        ("channels: [x]\nenvs_dirs: [/a, '/b', \"/c\"]  # flow\n", ["/a", "/b", "/c"]),
        ("envs_dirs:\n- /same/indent\nchannels:\n- x\n", ["/same/indent"]),
        ("envs_path: /only\n", ["/only"]),
        ("channels:\n  - defaults\n", []),
        ("  envs_dirs:\n    - /nested/under/another/key\n", []),
    ],
)
def test_parse_envs_dirs(text: str, dirs: list[str]) -> None:
    """Block, flow, scalar and alias forms are read; other keys and nested keys are not."""
    assert parse_envs_dirs(text) == dirs


def test_conda_versions_read_records_by_name_and_version_fields(tmp_path: Path) -> None:
    """conda-meta records give versions by their fields; names with dashes, junk and other packages are handled."""
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    (meta / "python-3.12.1-hab00c5b_1_cpython.json").write_text(json.dumps(conda_python_record("3.12.1")))
    record = {"name": "spyder-kernels", "version": "3.1.4", "build": "unix_pyh707e725_0", "files": []}
    (meta / "spyder-kernels-3.1.4-unix_pyh707e725_0.json").write_text(json.dumps(record))
    (meta / "ipykernel-6.0.0-h0.json").write_text("{not json")
    (meta / "numpy-1.26.4-h0.json").write_text(json.dumps({"name": "numpy", "version": "1.26.4"}))
    assert conda_versions(meta) == {"python": "3.12.1", "spyder-kernels": "3.1.4"}


def test_metadata_header_of_real_dist_info_matches_the_venv_python() -> None:
    """Name and Version read from real METADATA files equal what importlib.metadata said in that venv."""
    venv = heavy_venv()
    (metadata,) = site_packages(venv).glob("spyder_kernels-*.dist-info/METADATA")
    assert read_metadata_header(metadata) == ("spyder-kernels", expected(venv)["spyder_kernels"])
    assert dist_versions(site_packages(venv)) == {
        "spyder-kernels": expected(venv)["spyder_kernels"],
        "ipykernel": expected(venv)["ipykernel"],
        "ipython": expected(venv)["ipython"],
    }


def test_python_version_sources(tmp_path: Path) -> None:
    """pyvenv.cfg version_info wins over version; a bare prefix falls back to its lib/pythonX.Y name."""
    cfg = tmp_path / "pyvenv.cfg"
    cfg.write_text("home = /usr/bin\nversion = 3.11\nversion_info = 3.11.2.final.0\n")
    assert venv_python_version(cfg) == "3.11.2"
    cfg.write_text("home = /usr/bin\nversion = 3.10.4\n")
    assert venv_python_version(cfg) == "3.10.4"
    bare = tmp_path / "bare"
    (bare / "lib" / "python3.13" / "site-packages").mkdir(parents=True)
    (bare / "lib" / "python3.9" / "site-packages").mkdir(parents=True)
    assert read_prefix(bare, "conda").python == "3.13"


def test_dist_info_wins_over_conda_record(tmp_path: Path) -> None:
    """pip's dist-info (what Python imports) overrides conda's record of the same package."""
    venv = heavy_venv()
    prefix = make_venv(tmp_path / "mixed")
    for dist_info in site_packages(venv).glob("*.dist-info"):
        (site_packages(prefix) / dist_info.name).mkdir()
        (site_packages(prefix) / dist_info.name / "METADATA").write_bytes((dist_info / "METADATA").read_bytes())
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "spyder-kernels-2.5.0-h0.json").write_text(
        json.dumps({"name": "spyder-kernels", "version": "2.5.0"})
    )
    facts = read_prefix(prefix, "conda")
    assert facts.spyder_kernels == expected(venv)["spyder_kernels"]
    assert facts.python == expected(venv)["python"]
