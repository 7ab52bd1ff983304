"""Discovery of real environments: conda-style prefixes, venvs, condarc, CONDA_EXE, cache, exclusions, rights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import pytest
from envfixtures import (
    conda_copy,
    discover_as,
    expected,
    heavy_venv,
    list_in_environments_txt,
    make_conda_style,
    make_venv,
    public_dir,
    site_packages,
)

from ssd.envs import DiscoveryOptions, EnvDiscovery, EnvInfo, discover

ISOLATED = DiscoveryOptions(known_roots=False, venv_dirs=["~/.virtualenvs"])


@pytest.fixture(scope="module")
def heavy() -> Path:
    """The cached venv with spyder-kernels and ipykernel really installed."""
    return heavy_venv()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home folder for one test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def mine(listing: list[EnvInfo], top: Path) -> dict[str, EnvInfo]:
    """The listed environments under *top* (the machine may have installs of its own), by prefix."""
    return {info.prefix: info for info in listing if info.prefix.startswith(f"{top}/")}


def test_conda_style_prefix_from_environments_txt_reports_every_field(heavy: Path, home: Path, tmp_path: Path) -> None:
    """A conda-style copy of the real venv listed in environments.txt is reported with every field right."""
    prefix = conda_copy(heavy, tmp_path / "envs" / "spy")
    list_in_environments_txt(home, prefix)
    oracle = expected(heavy)
    (info,) = mine(discover(ISOLATED, home, {}), tmp_path).values()
    assert info == EnvInfo(
        name="spy",
        prefix=str(prefix),
        kind="conda",
        python="3.11.2",
        spyder_kernels=oracle["spyder_kernels"],
        ipykernel=oracle["ipykernel"],
        spyder_ready=True,
        spyder_versions=["6.1.x"],
        writable=True,
        ipython=oracle["ipython"],
        spyder_problem=None,
    )


def test_venvs_in_venv_dirs_plain_and_with_spyder_kernels(heavy: Path, home: Path) -> None:
    """A plain venv is listed but not ready; a (symlinked) venv with spyder-kernels is ready."""
    folder = home / ".virtualenvs"
    plain = make_venv(folder / "plain")
    (folder / "spy").symlink_to(heavy)
    listing = {info.name: info for info in discover(ISOLATED, home, {})}
    assert listing["plain"].kind == "venv"
    assert listing["plain"].prefix == str(plain)
    assert listing["plain"].python == expected(heavy)["python"]
    assert (listing["plain"].spyder_kernels, listing["plain"].ipykernel, listing["plain"].spyder_ready) == (
        None,
        None,
        False,
    )
    assert listing["spy"].spyder_kernels == expected(heavy)["spyder_kernels"]
    assert listing["spy"].spyder_ready


def test_venv_outside_venv_dirs_is_not_listed(home: Path, tmp_path: Path) -> None:
    """A venv named in environments.txt is not a conda environment and is left out."""
    list_in_environments_txt(home, make_venv(tmp_path / "lonely"))
    assert mine(discover(ISOLATED, home, {}), tmp_path) == {}


def test_new_changed_and_removed_environments_show_on_next_call(heavy: Path, home: Path, tmp_path: Path) -> None:
    """The same EnvDiscovery sees a new venv, a new conda env, a package installed and an env removed."""
    discovery = EnvDiscovery(ISOLATED, home, {})
    assert mine(discovery.list(), tmp_path) == {}
    plain = make_venv(home / ".virtualenvs" / "later")
    assert mine(discovery.list(), tmp_path)[str(plain)].spyder_kernels is None
    for dist_info in site_packages(heavy).glob("*.dist-info"):  # what pip install would add
        shutil.copytree(dist_info, site_packages(plain) / dist_info.name)
    assert mine(discovery.list(), tmp_path)[str(plain)].spyder_ready
    conda = conda_copy(heavy, tmp_path / "envs" / "new")
    list_in_environments_txt(home, conda)
    assert set(mine(discovery.list(), tmp_path)) == {str(plain), str(conda)}
    shutil.rmtree(plain)
    assert set(mine(discovery.list(), tmp_path)) == {str(conda)}


def test_cache_is_used_until_a_watched_folder_changes(home: Path, heavy: Path) -> None:
    """A METADATA rewritten in place is not re-read until its site-packages folder's mtime moves."""
    venv = home / ".virtualenvs" / "edited"
    shutil.copytree(heavy, venv, symlinks=True)
    discovery = EnvDiscovery(ISOLATED, home, {})
    assert discovery.list()[0].spyder_kernels == expected(heavy)["spyder_kernels"]
    metadata = next(site_packages(venv).glob("spyder_kernels-*.dist-info")) / "METADATA"
    metadata.write_text(metadata.read_text().replace(f"Version: {expected(heavy)['spyder_kernels']}", "Version: 3.0.5"))
    assert discovery.list()[0].spyder_kernels == expected(heavy)["spyder_kernels"]
    os.utime(site_packages(venv), ns=(1, 1))
    assert discovery.list()[0].spyder_kernels == "3.0.5"
    assert discovery.list()[0].spyder_versions == []  # spyder-kernels 3.0 requires IPython 8
    assert (discovery.list()[0].spyder_problem or "").startswith(f"IPython {expected(heavy)['ipython']} breaks")


def test_exclusions_by_name_and_by_prefix(home: Path, tmp_path: Path) -> None:
    """``_*`` hides ``_ssd_`` by default; a pattern with a slash matches prefixes; no patterns shows all."""
    names = ("_ssd_", "work", "scratch")
    prefixes = [make_conda_style(tmp_path / "envs" / name) for name in names]
    list_in_environments_txt(home, *prefixes)
    assert {i.name for i in mine(discover(ISOLATED, home, {}), tmp_path).values()} == {"work", "scratch"}
    by_prefix = msgspec.structs.replace(ISOLATED, exclude=[f"{tmp_path}/envs/scr*"])
    assert {i.name for i in mine(discover(by_prefix, home, {}), tmp_path).values()} == {"_ssd_", "work"}
    nothing = msgspec.structs.replace(ISOLATED, exclude=[])
    assert len(mine(discover(nothing, home, {}), tmp_path)) == 3


def test_condarc_envs_dirs_of_user_and_of_a_root(home: Path, tmp_path: Path) -> None:
    """envs_dirs from ~/.condarc (block list, ~ and $VAR) and from a root's .condarc (flow list) are searched."""
    make_conda_style(home / "my-envs" / "a")
    make_conda_style(tmp_path / "var-envs" / "b")
    make_conda_style(tmp_path / "shared-envs" / "c")
    root = make_conda_style(tmp_path / "site-conda")
    (home / ".condarc").write_text(
        "channels:\n  - conda-forge\nenvs_dirs:\n  - ~/my-envs  # mine\n  - $SCRATCH/var-envs\n"
    )
    (root / ".condarc").write_text(f"envs_dirs: ['{tmp_path}/shared-envs']\n")
    options = msgspec.structs.replace(ISOLATED, extra_roots=[str(root)])
    listing = discover(options, home, {"SCRATCH": str(tmp_path)})
    assert {i.name for i in listing if i.prefix.startswith(str(tmp_path))} == {"a", "b", "c", "base"}


def test_conda_exe_and_mamba_root_prefix(home: Path, tmp_path: Path) -> None:
    """$CONDA_EXE's root is listed as base with its envs; $MAMBA_ROOT_PREFIX's envs are listed."""
    conda_root = make_conda_style(tmp_path / "inst")
    (conda_root / "bin").mkdir()
    (conda_root / "bin" / "conda").write_text("")
    make_conda_style(conda_root / "envs" / "x")
    mamba_root = tmp_path / "mamba"
    make_conda_style(mamba_root / "envs" / "y")
    environ = {"CONDA_EXE": str(conda_root / "bin" / "conda"), "MAMBA_ROOT_PREFIX": str(mamba_root)}
    listing = mine(discover(ISOLATED, home, environ), tmp_path)
    assert {(i.name, i.prefix) for i in listing.values()} == {
        ("base", str(conda_root)),
        ("x", str(conda_root / "envs" / "x")),
        ("y", str(mamba_root / "envs" / "y")),
    }
    assert mine(discover(ISOLATED, home, {}), tmp_path) == {}


def test_known_root_in_home_and_duplicates_listed_once(home: Path) -> None:
    """~/miniconda3 is found as base, and an env both in environments.txt and in envs/ is listed once."""
    root = make_conda_style(home / "miniconda3")
    (root / "condabin").mkdir()
    env = make_conda_style(root / "envs" / "tools")
    list_in_environments_txt(home, root, env, env)
    options = msgspec.structs.replace(ISOLATED, known_roots=True)
    listing = [i for i in discover(options, home, {}) if i.prefix.startswith(str(home))]
    assert [(i.name, i.prefix) for i in listing] == [("base", str(root)), ("tools", str(env))]


def test_read_only_prefix_is_not_writable_and_private_homes_stay_private(heavy: Path) -> None:
    """As an ordinary user: a chmod 555 prefix is writable=False; another user's 0700 folder is unseen."""
    with public_dir() as top:
        home = top / "home"
        shared = conda_copy(heavy, top / "shared")
        private = make_conda_style(top / "private" / "env")
        list_in_environments_txt(home, shared, private)
        options = msgspec.json.encode(ISOLATED).decode()
        if os.geteuid() != 0:
            shared.chmod(0o555)
            (top / "private").chmod(0o000)
            listing = [msgspec.to_builtins(i) for i in discover(ISOLATED, home, {})]
        else:
            subject = "nobody"
            os.chmod(home, 0o755)
            (top / "private").chmod(0o700)
            shared.chmod(0o555)
            listing = discover_as(subject, options, home, {})
        assert [(i["prefix"], i["writable"], i["spyder_ready"]) for i in listing] == [(str(shared), False, True)]
