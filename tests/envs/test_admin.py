"""Environment administration: venv and pip for real (the package index reachable here), conda via a stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support.eventually import eventually

from ssd.envs import admin
from ssd.envs.admin import Operation, OperationState, Progress, ToolFailed
from ssd.envs.validate import EnvRefused
from ssd.errors import ErrorCode

BASE_PYTHON = "/usr/bin/python3"
MISSING = "ssd-no-such-package-xyz"

STANDIN_CONDA = """\
import json, os, pathlib, signal, subprocess, sys, time
record = pathlib.Path(__file__).with_suffix(".calls")
with record.open("a") as fh:
    fh.write(json.dumps({"argv": sys.argv, "ppid": os.getppid()}) + "\\n")
mode = os.environ.get("STANDIN_MODE", "ok")
print("Collecting package metadata: done\\nDownloading  10%\\r Downloading  45%\\r Downloading 100%", flush=True)
if mode == "fail":
    print("PackagesNotFoundError: The following packages are not available from current channels")
    sys.exit(1)
if mode == "hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"child {child.pid}", flush=True)
    time.sleep(600)
print("Executing transaction: done")
"""


def site_packages(prefix: Path) -> Path:
    """The one site-packages folder of a venv."""
    (found,) = prefix.glob("lib/python3*/site-packages")
    return found


def tree(path: Path) -> list[str]:
    """Every path under *path* (links not followed), for before/after comparisons."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def alive(processes: list[psutil.Process] | None = None) -> list[psutil.Process]:
    """Those (default: all below this test) still running, or zombies left for this process to reap."""
    left = []
    for p in psutil.Process().children(recursive=True) if processes is None else processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # an orphan's zombie is init's to reap, not ours
            if p.is_running() and (p.status() != psutil.STATUS_ZOMBIE or p.ppid() == os.getpid()):
                left.append(p)
    return left


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv (with pip) built once by create_venv, shared by the install tests."""
    prefix = tmp_path_factory.mktemp("shared") / "env"
    asyncio.run(admin.create_venv(prefix, BASE_PYTHON, [], lambda record: None))
    return prefix


@pytest.fixture
def standin(tmp_path: Path) -> tuple[str, Path]:
    """A STAND-IN conda executable (a Python script) that records its argv and prints conda-like progress."""
    script = tmp_path / "conda"
    script.write_text(f"#!{sys.executable}\n{STANDIN_CONDA}")
    script.chmod(0o755)
    return str(script), script.with_suffix(".calls")


def calls(record: Path) -> list[dict[str, object]]:
    """What the stand-in recorded, one call per line."""
    return [json.loads(line) for line in record.read_text().splitlines()]


def conda_prefix(path: Path) -> Path:
    """A directory that discovery would call a conda environment."""
    (path / "conda-meta").mkdir(parents=True)
    (path / "conda-meta" / "history").write_text("==> 2024-01-01 00:00:00 <==\n")
    return path


def test_create_venv_with_a_package_streams_progress_and_installs_it(tmp_path: Path) -> None:
    records: list[Progress] = []
    prefix = tmp_path / "fresh"
    asyncio.run(admin.create_venv(prefix, BASE_PYTHON, ["six"], records.append))
    phases = [r.phase for r in records]
    assert phases[0] == "venv"
    assert "pip" in phases
    assert records[-1] == Progress("done", None, 100.0)
    lines = [r.line for r in records if r.phase == "pip" and r.line]
    assert any("Successfully installed six" in line for line in lines), lines
    assert list(site_packages(prefix).glob("six-*.dist-info"))
    assert (prefix / "pyvenv.cfg").is_file()


def test_a_failed_create_leaves_no_prefix_behind(tmp_path: Path) -> None:
    prefix = tmp_path / "broken"
    with pytest.raises(ToolFailed, match=MISSING):
        asyncio.run(admin.create_venv(prefix, BASE_PYTHON, [MISSING], lambda record: None))
    assert not os.path.lexists(prefix)


def test_install_into_an_existing_venv_through_an_operation(venv: Path) -> None:
    async def scenario() -> tuple[OperationState, list[Progress], list[Progress]]:
        seen: list[Progress] = []
        op = Operation("install", str(venv), on_progress=seen.append)
        op.start(lambda progress: admin.install(venv, ["idna"], progress, known={venv}))
        streamed = await replay(op)
        return await op.wait(), streamed, seen

    state, streamed, seen = asyncio.run(scenario())
    assert state is OperationState.DONE
    assert streamed == seen
    assert streamed[-1].phase == "done"
    assert any(r.line and "idna" in r.line for r in streamed)
    assert list(site_packages(venv).glob("idna-*.dist-info"))


def test_a_failing_install_reports_pips_error_text(venv: Path) -> None:
    async def scenario() -> Operation:
        op = Operation("install", str(venv)).start(lambda p: admin.install(venv, [MISSING], p, known={venv}))
        await op.wait()
        return op

    op = asyncio.run(scenario())
    assert op.state is OperationState.FAILED
    assert op.error is not None
    assert "No matching distribution found" in op.error
    assert any(MISSING in line for line in op.output)
    assert len(op.output) <= admin.TAIL_LINES
    late = asyncio.run(replay(op))  # a late subscriber gets the history and the end
    assert (late[0].phase, late[-1].phase) == ("pip", "failed")


async def replay(op: Operation) -> list[Progress]:
    """Every record an operation's subscriber receives."""
    return [record async for record in op.records()]


def test_cancel_a_real_pip_install_stops_its_processes(venv: Path) -> None:
    """Cancelled at pip's first output line: pip is terminated before it installs; the venv still works."""
    before = tree(venv)

    async def scenario() -> tuple[OperationState, list[psutil.Process]]:
        op = Operation("install", str(venv)).start(lambda p: admin.install(venv, ["numpy"], p, known={venv}))
        children: list[psutil.Process] = []
        async for record in op.records():
            if record.line and not children:
                children = alive()
                op.cancel()
        return await op.wait(), children

    state, children = asyncio.run(scenario())
    assert state is OperationState.CANCELLED
    assert children, "pip was running when cancelled"
    assert not alive(children)
    assert not alive()
    assert not list(site_packages(venv).glob("numpy*"))
    assert tree(venv) == before or all("__pycache__" in p for p in set(tree(venv)) ^ set(before))
    subprocess.run([venv / "bin" / "python", "-m", "pip", "check"], check=True, capture_output=True)


def test_remove_deletes_a_venv(tmp_path: Path) -> None:
    prefix = tmp_path / "doomed"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", prefix], check=True)
    records: list[Progress] = []
    asyncio.run(admin.remove(prefix, records.append, known={prefix}))
    assert not os.path.lexists(prefix)
    assert [r.phase for r in records] == ["remove", "done"]


def test_remove_refuses_unknown_prefixes_and_symlinks_and_changes_nothing(tmp_path: Path) -> None:
    real = tmp_path / "real"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", real], check=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    before = tree(tmp_path)
    with pytest.raises(EnvRefused, match="not an environment that discovery found"):
        asyncio.run(admin.remove(real, lambda record: None, known={tmp_path / "other"}))
    with pytest.raises(EnvRefused, match="symbolic link"):
        asyncio.run(admin.remove(link, lambda record: None, known={link}))
    with pytest.raises(EnvRefused, match="not an environment that discovery found"):
        asyncio.run(admin.install(link, ["six"], lambda record: None, known={real}))
    assert tree(tmp_path) == before
    assert link.is_symlink()


def test_create_refuses_an_existing_prefix_and_bad_input_without_touching_disk(tmp_path: Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(EnvRefused, match="already exists"):
        asyncio.run(admin.create_venv(tmp_path, BASE_PYTHON, [], lambda record: None))
    with pytest.raises(ValueError, match="starts with '-'"):
        asyncio.run(admin.create_venv(tmp_path / "x", BASE_PYTHON, ["--index-url=http://evil"], lambda record: None))
    with pytest.raises(ValueError, match="environment name contains '/'"):
        asyncio.run(admin.create_conda("/bin/false", "../x/y", None, [], lambda record: None))
    assert tree(tmp_path) == before


def test_conda_install_with_standin_conda_executable(tmp_path: Path, standin: tuple[str, Path]) -> None:
    exe, record = standin
    prefix = conda_prefix(tmp_path / "cenv")
    records: list[Progress] = []
    asyncio.run(admin.install(prefix, ["six", "numpy >= 1.26"], records.append, known={prefix}, conda_exe=exe))
    (call,) = calls(record)
    assert call["argv"] == [exe, "install", "-y", "-p", str(prefix), "six", "numpy>=1.26"]
    assert call["ppid"] == os.getpid(), "started directly, no shell in between"
    assert [r.percent for r in records if r.percent is not None] == [10.0, 45.0, 100.0, 100.0]
    assert any(r.line == "Executing transaction: done" for r in records)


def test_conda_create_and_remove_with_standin_conda_executable(tmp_path: Path, standin: tuple[str, Path]) -> None:
    exe, record = standin
    prefix = conda_prefix(tmp_path / "cenv")
    asyncio.run(admin.create_conda(exe, "spy-6.1", "3.12", ["spyder-kernels>=3.1,<3.2"], lambda r: None))
    asyncio.run(admin.create_conda(exe, tmp_path / "new", None, [], lambda r: None))
    asyncio.run(admin.remove(prefix, lambda r: None, known={prefix}, conda_exe=exe))
    argvs = [call["argv"][1:] for call in calls(record)]  # type: ignore[index]
    assert argvs == [
        ["create", "-y", "-n", "spy-6.1", "python=3.12", "spyder-kernels<3.2,>=3.1"],
        ["create", "-y", "-p", str(tmp_path / "new")],
        ["remove", "-y", "-p", str(prefix), "--all"],
    ]


def test_failing_standin_conda_executable_raises_with_its_output(
    tmp_path: Path, standin: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    exe, _ = standin
    monkeypatch.setenv("STANDIN_MODE", "fail")
    prefix = conda_prefix(tmp_path / "cenv")
    with pytest.raises(ToolFailed, match="PackagesNotFoundError") as info:
        asyncio.run(admin.install(prefix, ["nope"], lambda r: None, known={prefix}, conda_exe=exe))
    assert info.value.returncode == 1
    assert info.value.code == ErrorCode.ENV_TOOL_FAILED


def test_cancel_kills_the_whole_group_of_a_standin_that_ignores_sigterm(
    tmp_path: Path, standin: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    exe, _ = standin
    monkeypatch.setenv("STANDIN_MODE", "hang")
    monkeypatch.setattr(admin, "TERM_GRACE", 0.3)
    prefix = conda_prefix(tmp_path / "cenv")

    async def scenario() -> tuple[OperationState, list[psutil.Process]]:
        op = Operation("install", str(prefix)).start(
            lambda p: admin.install(prefix, ["six"], p, known={prefix}, conda_exe=exe)
        )
        group: list[psutil.Process] = []
        async for record in op.records():
            if record.line and record.line.startswith("child "):
                group = alive()
                op.cancel()
        return await op.wait(), group

    state, group = asyncio.run(scenario())
    assert state is OperationState.CANCELLED
    assert len(group) == 2, "the stand-in and its grandchild"
    # SIGKILL is sent, not yet delivered: the orphaned grandchild dies (and init reaps it) a moment later.
    eventually(lambda: not alive(group), "the stand-in's process group to be gone")
    assert not alive()


def test_pick_tool() -> None:
    available = {"conda": "/opt/conda/bin/conda", "micromamba": "/usr/bin/micromamba"}
    assert admin.pick_tool("venv", None, available) == ("pip", None)
    assert admin.pick_tool("conda", None, available) == ("conda", "/opt/conda/bin/conda")
    assert admin.pick_tool("conda", "auto", {"mamba": "/m", **available}) == ("mamba", "/m")
    assert admin.pick_tool("conda", None, {}) == ("pip", None)
    assert admin.pick_tool("conda", "micromamba", available) == ("micromamba", "/usr/bin/micromamba")
    assert admin.pick_tool("conda", "pip", available) == ("pip", None)
    for kind, configured, message in [
        ("conda", "mamba", "not installed"),
        ("venv", "conda", "administered with pip"),
        ("conda", "poetry", "unknown tool"),
        ("docker", None, "unknown environment kind"),
    ]:
        with pytest.raises(ValueError, match=message):
            admin.pick_tool(kind, configured, available)


def test_spyder_specs_follow_the_compatibility_table() -> None:
    assert admin.spyder_specs("6.1.2")[0] == "spyder-kernels>=3.1.0,<3.2.0"
    assert admin.spyder_specs("5.5.6")[0] == "spyder-kernels>=2.5.0,<2.6.0"
    for unknown in ("9.9.9", "six", "6"):
        with pytest.raises(ValueError, match="no known spyder-kernels series"):
            admin.spyder_specs(unknown)
