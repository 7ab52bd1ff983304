"""The compatibility verdict: the table's known breaks checked against real kernels, real envs and the table itself."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from envfixtures import (
    broken_kernel_venv,
    conda_copy,
    conda_python_record,
    expected,
    kernel_venv,
    list_in_environments_txt,
    make_conda_style,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ssd.envs import DiscoveryOptions, check_spyder, discover, env_verdict, install_specs
from ssd.envs.compat import COMPATIBILITY

ISOLATED = DiscoveryOptions(known_roots=False, venv_dirs=["~/.virtualenvs"])
# What Spyder sends as "traceback_highlight_style" when a console starts: a colour per token kind.
_SPYDER_STYLE = {k: ("#000000", False, False) for k in ("normal", "keyword", "builtin", "definition")}
_SPYDER_STYLE |= {k: ("#000000", False, False) for k in ("comment", "string", "number", "instance")}
_THEME_CALL = f"get_ipython().kernel.set_traceback_syntax_highlighting({_SPYDER_STYLE!r}); print('themed')"


@contextmanager
def spyder_console(prefix: Path, tmp: Path) -> Iterator[BlockingKernelClient]:
    """A real ``spyder_kernels.console`` started from *prefix*, and a client connected to it."""
    connection, _ = write_connection_file(str(tmp / "kernel.json"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "IPYTHONDIR": str(tmp / "ipython")}
    argv = [str(prefix / "bin" / "python"), "-m", "spyder_kernels.console", "-f", connection]
    with (tmp / "kernel.log").open("w") as log:
        process = subprocess.Popen(argv, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    client = BlockingKernelClient(connection_file=connection)
    client.load_connection_file()
    client.start_channels(hb=False)  # a heartbeat missed on a loaded machine would end wait_for_ready early
    try:
        client.wait_for_ready(timeout=45)
        yield client
    finally:
        client.stop_channels()
        process.kill()
        process.wait()


@pytest.mark.parametrize("which", ["broken", "pinned"])
def test_the_table_fact_holds_in_a_real_spyder_console(which: str, tmp_path: Path) -> None:
    """Spyder's traceback theme call fails with the linux_theme ImportError on IPython 9.18.1, works when pinned."""
    prefix = broken_kernel_venv() if which == "broken" else kernel_venv()
    with spyder_console(prefix, tmp_path) as client:
        reply = client.execute_interactive(_THEME_CALL, timeout=30, output_hook=lambda msg: None)
    content = reply["content"]
    if which == "broken":
        assert expected(prefix)["ipython"].startswith("9.18")
        assert (content["status"], content["ename"]) == ("error", "ImportError")
        assert "linux_theme" in content["evalue"]
    else:
        assert content["status"] == "ok", content
    assert env_verdict(
        expected(prefix)["spyder_kernels"], ipython=expected(prefix)["ipython"], ipykernel=expected(prefix)["ipykernel"]
    ).ok == (which == "pinned")


def test_discovery_flags_a_real_broken_env_with_the_reason_and_passes_a_good_one(tmp_path: Path) -> None:
    """A venv and a conda env with spyder-kernels 3.1.6 + IPython 9.18.1 serve no Spyder, saying why; pinned ones do."""
    home = tmp_path / "home"
    venvs = home / ".virtualenvs"
    venvs.mkdir(parents=True)
    (venvs / "broken").symlink_to(broken_kernel_venv())
    (venvs / "good").symlink_to(kernel_venv())
    conda = conda_copy(broken_kernel_venv(), tmp_path / "envs" / "broken-conda")
    list_in_environments_txt(home, conda)
    listing = {info.name: info for info in discover(ISOLATED, home, {})}
    for name in ("broken", "broken-conda"):
        info = listing[name]
        assert (info.spyder_ready, info.spyder_versions, info.ipython) == (False, [], "9.18.1")
        assert info.spyder_problem is not None
        assert info.spyder_problem.startswith("IPython 9.18.1 breaks spyder-kernels 3.1.6 (cannot import name")
        assert info.spyder_problem.endswith(": install ipython<9.18")
    good = listing["good"]
    assert (good.spyder_ready, good.spyder_versions, good.spyder_problem) == (True, ["6.1.x"], None)
    assert good.ipython == expected(kernel_venv())["ipython"]


def test_ipython_is_read_from_conda_records_and_its_absence_is_a_problem(tmp_path: Path) -> None:
    """conda-meta records give IPython's version; spyder-kernels without IPython serves nothing and says so."""
    home = tmp_path / "home"
    home.mkdir()
    prefix = make_conda_style(tmp_path / "envs" / "records")
    meta = prefix / "conda-meta"
    (meta / "python-3.12.1-h0.json").write_text(json.dumps(conda_python_record("3.12.1")))
    for name, version in (("spyder-kernels", "3.1.6"), ("ipykernel", "6.29.5")):
        (meta / f"{name}-{version}-h0.json").write_text(json.dumps({"name": name, "version": version}))
    list_in_environments_txt(home, prefix)
    (info,) = (i for i in discover(ISOLATED, home, {}) if i.prefix == str(prefix))
    assert info.spyder_problem == (
        "spyder-kernels 3.1.6 needs IPython, which is not installed: install spyder-kernels>=3.1.0,<3.2.0 ipython<9.18"
    )
    (meta / "ipython-9.17.1-h0.json").write_text(json.dumps({"name": "ipython", "version": "9.17.1"}))
    os.utime(meta, ns=(1, 1))  # discovery rereads a prefix when conda-meta's mtime moves
    (info,) = (i for i in discover(ISOLATED, home, {}) if i.prefix == str(prefix))
    assert (info.ipython, info.spyder_versions, info.spyder_problem) == ("9.17.1", ["6.1.x"], None)


# Every IPython and ipykernel release number around the table's boundaries (plus pre-releases).
_SAMPLES = [
    *(f"8.{minor}.{patch}" for minor in range(10, 40) for patch in range(3)),
    *(f"9.{minor}.{patch}" for minor in range(0, 25) for patch in range(3)),
    *(f"6.{minor}.{patch}" for minor in range(25, 32) for patch in range(6)),
    "7.0.0",
    "7.4.0",
    "9.18.0rc1",
    "10.0.0",
]


def test_each_break_and_its_avoid_split_every_sample_version_in_two() -> None:
    """No version is both broken and allowed by the pin that avoids it, nor neither."""
    for row in COMPATIBILITY:
        for item in row.breaks:
            for sample in _SAMPLES:
                broken = SpecifierSet(item.broken, prereleases=True).contains(Version(sample))
                avoided = SpecifierSet(item.avoid, prereleases=True).contains(Version(sample))
                assert broken != avoided, (row.spyder, item, sample)


def test_install_specs_pin_every_undeclared_break_and_name_the_series() -> None:
    """--spyder 6.1 installs the 3.1 series and ipython<9.18; 6.0's breaks are all declared by spyder-kernels."""
    assert install_specs("6.1") == install_specs("6.1.8") == ["spyder-kernels>=3.1.0,<3.2.0", "ipython<9.18"]
    assert install_specs("6.0.3") == ["spyder-kernels>=3.0.0,<3.1.0"]
    assert install_specs("7.0") is None
    pins = SpecifierSet("<9.18")
    assert not any(pins.contains(v, prereleases=True) for v in ("9.18.0", "9.18.1", "9.18.0rc1"))


@pytest.mark.parametrize(
    ("versions", "problem"),
    [
        (("3.1.6", "9.18.0", "6.31.0"), "IPython 9.18.0 breaks spyder-kernels 3.1.6 (cannot import name 'linux_theme'"),
        (("3.1.2", "8.17.1", "6.31.0"), "IPython 8.17.1 breaks spyder-kernels 3.1.2 (excluded by spyder-kernels 3.1)"),
        (("3.1.6", "9.17.1", "7.4.0"), "ipykernel 7.4.0 breaks spyder-kernels 3.1.6 (spyder-kernels 3.1 requires"),
        (("3.0.5", "9.17.1", "6.31.0"), "IPython 9.17.1 breaks spyder-kernels 3.0.5 (spyder-kernels 3.0 requires"),
        (("3.1.6", None, "6.31.0"), "spyder-kernels 3.1.6 needs IPython, which is not installed"),
        (("3.1.6", "9.17.1", None), "spyder-kernels 3.1.6 needs ipykernel, which is not installed"),
    ],
)
def test_each_broken_pair_gets_a_reason(versions: tuple[str, str | None, str | None], problem: str) -> None:
    """A break of IPython or ipykernel (verified or declared), or a missing package, serves no Spyder and says why."""
    kernels, ipython, ipykernel = versions
    verdict = env_verdict(kernels, ipython=ipython, ipykernel=ipykernel)
    assert (verdict.ok, verdict.series) == (False, [])
    assert verdict.problem is not None
    assert verdict.problem.startswith(problem), verdict.problem
    assert verdict.install


def test_check_spyder_for_the_plugin() -> None:
    """For a given Spyder: works, wrong series (with what to install), unknown Spyder, an env_list entry as given."""
    good = {"spyder_kernels": "3.1.6", "ipython": "9.17.1", "ipykernel": "6.31.0"}
    assert check_spyder("6.1.8", good).series == ["6.1.x"]
    older = check_spyder("6.0.2", good)
    assert older.problem == "spyder-kernels 3.1.6 does not serve Spyder 6.0.x: install spyder-kernels>=3.0.0,<3.1.0"
    assert older.install == ["spyder-kernels>=3.0.0,<3.1.0"]
    bare = check_spyder("6.1.8", {"spyder_kernels": None, "ipython": None})
    assert bare.install == ["spyder-kernels>=3.1.0,<3.2.0", "ipython<9.18"]
    broken = check_spyder("6.1.8", {**good, "ipython": "9.18.1"})
    assert (broken.ok, broken.install) == (False, ["ipython<9.18"])
    unknown = check_spyder("7.0.0", good)
    assert not unknown.ok
    assert "not in ssd's compatibility table" in (unknown.problem or "")
