"""ssd-ctl's kernel commands as a user runs them: subprocesses against a real daemon and real kernels.

One user-mode daemon serves this module (the test user's own kernels, in a
conda-style copy of the cached kernel venv); every test stops the kernels it
starts, and a fixture stops any a failed test left behind.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from envfixtures import conda_copy, expected, kernel_venv
from jupyter_client.blocking.client import BlockingKernelClient
from support.daemon import Daemon, start_daemon
from support.eventually import eventually

from ssd.ctl.connfiles import choose_connection_file
from ssd.ctl.kernelargs import resolve_kernel
from ssd.errors import ErrorCode, SSDError
from ssd.kernels.connection import CLASSIC_KEYS
from ssd.replies import KernelDescription

CTL = [sys.executable, "-m", "ssd.ctl.main"]


@dataclass
class Host:
    """The module's daemon, a logged-in client directory, this client's Jupyter runtime dir, the env."""

    daemon: Daemon
    client_dir: Path
    runtime: Path
    prefix: Path
    tmp: Path

    def ctl(
        self, *args: str, path: str | None = None, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ssd-ctl as a person would, without a terminal; *path* replaces PATH, *extra* adds variables."""
        env = {**os.environ, "SSD_CLIENT_DIR": str(self.client_dir), "JUPYTER_RUNTIME_DIR": str(self.runtime)}
        env.update(extra or {})
        if path is not None:
            env["PATH"] = path
        return subprocess.run(
            [*CTL, *args], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    def json(self, *args: str, **options: Any) -> Any:
        """Run ssd-ctl ... --json, require exit 0, return the document."""
        result = self.ctl(*args, "--json", **options)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def kernels(self) -> list[dict[str, Any]]:
        """This user's kernels, as ssd-ctl kernels --json lists them."""
        listed: list[dict[str, Any]] = self.json("kernels", self.daemon.host)["kernels"]
        return listed


@pytest.fixture(scope="module")
def module_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A daemon that finds the env ``sci``, and a client logged in to it by its authorized key."""
    tmp = tmp_path_factory.mktemp("kernels-ctl")
    prefix = conda_copy(kernel_venv(), tmp / "envs" / "sci")
    # Plain transport: the classic file Spyder accepts reaches the kernel itself (curve needs the tunnel).
    extra = {
        "SSD_ENVS_ENVS_DIRS": str(tmp / "envs"),
        "SSD_KERNELS_STOP_ON_EXIT": "true",  # a safety net only
        "SSD_KERNELS_TRANSPORT": "plain",
    }
    daemon = start_daemon(tmp, extra_env=extra)
    host = Host(daemon, tmp / "client", tmp / "runtime", prefix, tmp)
    try:
        made = host.json("keygen")
        daemon.authorize(made["public_key"].encode())
        assert host.json("login", daemon.host, "--key-only", "--trust")["method"] == "key"
        yield host
    finally:
        daemon.stop_and_check()


@pytest.fixture
def host(module_host: Host) -> Iterator[Host]:
    """The module's host; kernels a failed test left behind are stopped after it (tests stop their own)."""
    yield module_host
    for kernel in module_host.kernels():
        module_host.ctl("stop", module_host.daemon.host, kernel["kernel_id"])


# -- helpers --------------------------------------------------------------------------------


@contextmanager
def kernel_client(connection_file: Path) -> Iterator[BlockingKernelClient]:
    """A jupyter_client connected with nothing but the connection file ssd-ctl wrote."""
    client = BlockingKernelClient()
    client.load_connection_file(str(connection_file))
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        yield client
    finally:
        client.stop_channels()
        client.context.destroy(linger=0)


def run_cell(client: BlockingKernelClient, code: str) -> tuple[str, dict[str, Any]]:
    """Execute *code*; return what it printed and the execute_reply content."""
    printed: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    reply = client.execute_interactive(code, timeout=30, output_hook=collect)
    return "".join(printed), reply["content"]


def process_gone(pid: int) -> bool:
    """The kernel process has exited and was reaped (no zombie left)."""
    return not psutil.pid_exists(pid)


def check_classic_file(path: Path) -> dict[str, Any]:
    """The file has exactly the keys Spyder's "Connect to an existing kernel" dialog accepts, mode 0600."""
    info: dict[str, Any] = json.loads(path.read_text())
    assert set(info) == set(CLASSIC_KEYS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return info


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


# -- start, list, interrupt, stop -----------------------------------------------------------


def test_start_writes_a_classic_connection_file_that_runs_code(host: Host) -> None:
    """start --json: the default file in Jupyter's runtime dir works with jupyter_client; kernels lists it."""
    started = host.json("start", host.daemon.host, "sci")
    kernel = started["kernel"]
    path = Path(started["connection_file"])
    assert path == host.runtime / f"kernel-ssd-{kernel['kernel_id']}.json"
    assert stat.S_IMODE(host.runtime.stat().st_mode) == 0o700
    info = check_classic_file(path)
    assert info["key"] not in json.dumps(started)  # the HMAC key is in the file only
    assert kernel["kind"] == "spyder"
    assert kernel["env"] == str(host.prefix)
    assert started["kernel_info"]["spyder_kernels"] == expected(kernel_venv())["spyder_kernels"]
    assert {"spawn", "ready", "total"} <= set(started["timing"])

    with kernel_client(path) as client:
        printed, reply = run_cell(client, "import os, sys; print(os.getpid(), sys.prefix)")
        assert reply["status"] == "ok"
        assert printed.split() == [str(kernel["pid"]), str(host.prefix)]

    listed = host.kernels()
    assert [k["kernel_id"] for k in listed] == [kernel["kernel_id"]]
    assert listed[0]["short_id"] == kernel["kernel_id"][:8]
    table = host.ctl("kernels", host.daemon.host)
    assert table.returncode == 0, table.stderr
    assert kernel["kernel_id"][:8] in table.stdout
    assert "ready" in table.stdout  # names may wrap in 80 columns; ids, kinds and states never do
    assert "spyder" in table.stdout

    stopped = host.json("stop", host.daemon.host, kernel["kernel_id"][:8])
    assert stopped["kernel_id"] == kernel["kernel_id"]
    assert stopped["removed"] == [str(path)]
    assert not path.exists()
    assert host.kernels() == []
    eventually(lambda: process_gone(kernel["pid"]), "the kernel process gone", timeout=10)


def test_interrupt_stops_a_sleeping_cell(host: Host) -> None:
    """interrupt (the kernelspec's mode: a signal) ends time.sleep(60) with KeyboardInterrupt."""
    started = host.json("start", host.daemon.host, "sci")
    kernel_id = started["kernel"]["kernel_id"]
    with kernel_client(Path(started["connection_file"])) as client:
        # stop_on_error=False: ipykernel aborts the requests that arrive while it handles an error of a cell
        # that had it (the next cell, sent at once, would come back "aborted").
        msg_id = client.execute("import time; print('sleeping', flush=True); time.sleep(60)", stop_on_error=False)
        eventually(lambda: _printed(client, msg_id, "sleeping"), "sleeping printed", timeout=30)
        result = host.ctl("interrupt", host.daemon.host, kernel_id[:6])
        assert result.returncode == 0, result.stderr
        assert f"interrupted kernel {kernel_id} (by signal)" in result.stdout
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        printed, after = run_cell(client, "print('still here')")
        assert (printed.strip(), after["status"]) == ("still here", "ok")
    assert host.ctl("stop", host.daemon.host, kernel_id).returncode == 0


def _printed(client: BlockingKernelClient, msg_id: str, text: str) -> bool:
    """Read iopub until the cell *msg_id* printed *text* (False when nothing more is there yet)."""
    while True:
        try:
            msg = client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            return False
        mine = msg["parent_header"].get("msg_id") == msg_id
        if mine and msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return True


# -- options, restart, attach ---------------------------------------------------------------


def test_ipykernel_options_restart_and_attach(host: Host) -> None:
    """An ipykernel with --name, --cwd, --env and a chosen file; restart keeps id and ports; attach rewrites it."""
    workdir = host.tmp / "work"
    workdir.mkdir(exist_ok=True)
    chosen = host.tmp / "files" / "mine.json"
    result = host.ctl(
        "start", host.daemon.host, "sci", "--kind", "ipykernel", "--name", "analysis", "--cwd", str(workdir),
        "--env", "SPY_TEST_MARK=42", "--connection-file", str(chosen),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    kernel_id = host.kernels()[0]["kernel_id"]
    assert f"kernel {kernel_id} (analysis) ready" in result.stdout
    assert f"connection file: {chosen}" in result.stdout
    assert f"stop it with: ssd-ctl stop {host.daemon.host} {kernel_id[:8]}" in result.stdout
    assert "spyder-kernels" not in result.stdout  # an ipykernel: no spyder-kernels in its kernel_info
    first = check_classic_file(chosen)
    first_pid = host.kernels()[0]["pid"]

    with kernel_client(chosen) as client:
        code = "import os; mark = 7; print(os.getcwd(), os.environ.get('SPY_TEST_MARK'), 'HOME' in os.environ)"
        printed, _ = run_cell(client, code)
        assert printed.split() == [str(workdir), "42", "True"]

    restarted = host.json("restart", host.daemon.host, "analysis")  # by name
    assert restarted["kernel"]["kernel_id"] == kernel_id
    assert restarted["kernel"]["pid"] != first_pid
    assert restarted["kernel"]["restarts"] == 1
    eventually(lambda: process_gone(first_pid), "the kernel process gone", timeout=10)

    again = host.tmp / "files" / "again.json"
    attached = host.json("attach", host.daemon.host, kernel_id[:4], "--connection-file", str(again))
    assert attached["connection_file"] == str(again)
    assert check_classic_file(again) == first  # same ports, same key after the restart
    with kernel_client(again) as client:
        printed, _ = run_cell(client, "print('mark' in globals())")
        assert printed.strip() == "False"  # a new process: the old state is gone

        # stop_on_error=False: ipykernel aborts the requests that arrive while it handles an error of a cell
        # that had it (the next cell, sent at once, would come back "aborted").
        msg_id = client.execute("import time; print('sleeping', flush=True); time.sleep(60)", stop_on_error=False)
        eventually(lambda: _printed(client, msg_id, "sleeping"), "sleeping printed", timeout=30)
        assert host.json("interrupt", host.daemon.host, kernel_id, "--mode", "message")["mode"] == "message"
        assert client.get_shell_msg(timeout=30)["content"]["ename"] == "KeyboardInterrupt"

    stopped = host.ctl("stop", host.daemon.host, "analysis")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped kernel {kernel_id}" in stopped.stdout
    assert host.kernels() == []
    assert chosen.exists()  # a file the user placed is the user's to remove


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error_with_its_exit_code(host: Host) -> None:
    """Unknown env or kind, refused variables and folders, unknown or ambiguous kernels: no traceback."""
    cases: list[tuple[list[str], int, str]] = [
        (["start", host.daemon.host, "nosuch"], 1, "no environment 'nosuch'"),
        (["start", host.daemon.host, "sci", "--kind", "julia"], 2, "invalid choice: 'julia'"),
        (["start", host.daemon.host, "sci", "--env", "LD_PRELOAD=/tmp/x.so"], 1, "not allowed for kernels"),
        (["start", host.daemon.host, "sci", "--env", "SPY_NO_VALUE"], 2, "expected NAME=VALUE"),
        (["start", host.daemon.host, "sci", "--cwd", str(host.tmp / "missing")], 1, "does not exist"),
        (["stop", host.daemon.host, "0000"], 1, "you have no kernel '0000'"),
        (["interrupt", host.daemon.host, "x", "--mode", "telepathy"], 2, "invalid choice"),
        (["attach", host.daemon.host, ""], 2, "KERNEL must not be empty"),
    ]
    for args, code, text in cases:
        result = host.ctl(*args)
        assert (result.returncode, text in result.stderr) == (code, True), (args, result.stderr)
        no_traceback(result)
    for args, code_name in (
        (["start", host.daemon.host, "nosuch"], "env_not_found"),
        (["start", host.daemon.host, "sci", "--env", "PATH=/tmp"], "env_var_refused"),
        (["restart", host.daemon.host, "0000"], "kernel_not_found"),
    ):
        result = host.ctl(*args, "--json")
        assert result.returncode == 1
        assert json.loads(result.stdout)["error"] == code_name
    assert host.kernels() == []  # nothing was started by a refused request


def test_an_ambiguous_kernel_is_refused_naming_the_candidates(host: Host) -> None:
    """Two kernels with one name: stop NAME is a usage error (exit 2) that lists both; ids still work."""
    ids = [host.json("start", host.daemon.host, "sci", "--kind", "ipykernel", "--name", "twin")["kernel"]["kernel_id"]
           for _ in range(2)]  # fmt: skip
    result = host.ctl("stop", host.daemon.host, "twin")
    assert result.returncode == 2, result.stderr
    assert "'twin' names 2 kernels" in result.stderr
    assert all(kernel_id[:8] in result.stderr for kernel_id in ids)
    no_traceback(result)
    assert sorted(k["kernel_id"] for k in host.kernels()) == sorted(ids)
    for kernel_id in ids:
        assert host.ctl("stop", host.daemon.host, kernel_id).returncode == 0
    assert host.kernels() == []


# -- which kernel, which file (the rules, on their own) -------------------------------------

KERNELS = [
    KernelDescription(kernel_id=kernel_id, name=name, env="/env", kind="spyder", state="ready")
    for kernel_id, name in [
        ("4e2de951-0000-4000-8000-000000000001", "sci (spyder)"),
        ("4e2d1111-0000-4000-8000-000000000002", "analysis"),
        ("analysis-not-a-uuid", "other"),
    ]
]


def test_resolve_kernel_by_id_prefix_or_name() -> None:
    """An exact id wins; a unique id prefix or an exact name names one kernel; more than one is a usage error."""
    assert resolve_kernel(KERNELS, "4e2de", "h") == KERNELS[0].kernel_id
    assert resolve_kernel(KERNELS, "4E2D1", "h") == KERNELS[1].kernel_id  # ids are lower-case hex
    assert resolve_kernel(KERNELS, "sci (spyder)", "h") == KERNELS[0].kernel_id
    assert resolve_kernel(KERNELS, "analysis-not-a-uuid", "h") == KERNELS[2].kernel_id
    with pytest.raises(SSDError, match=r"'4e2d' names 2 kernels: 4e2de951 .*4e2d1111") as ambiguous:
        resolve_kernel(KERNELS, "4e2d", "h")
    assert ambiguous.value.code == ErrorCode.USAGE
    with pytest.raises(SSDError, match="'analysis' names 2 kernels") as by_name:  # a name and an id prefix
        resolve_kernel(KERNELS, "analysis", "h")
    assert by_name.value.code == ErrorCode.USAGE
    with pytest.raises(SSDError, match="no kernel 'ff'") as unknown:
        resolve_kernel(KERNELS, "ff", "h")
    assert unknown.value.code == ErrorCode.KERNEL_NOT_FOUND


def test_the_kernels_own_file_keeps_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same machine (or a shared home): the default path is the file the kernel reads again on restart."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    kernel_id = "4e2de951-0000-4000-8000-000000000001"
    own = tmp_path / f"kernel-ssd-{kernel_id}.json"
    server_side = {"ip": "0.0.0.0", "key": "k", "shell_port": 1}
    same, other = dict(server_side), {**server_side, "ip": "labpc"}
    assert choose_connection_file(None, kernel_id, str(own), same) == own  # nothing there yet: a remote host
    own.write_text(json.dumps(server_side))
    assert choose_connection_file(None, kernel_id, str(own), same) == own  # the same content: harmless to write
    assert choose_connection_file(None, kernel_id, str(own), other) == tmp_path / f"kernel-ssd-{kernel_id}-client.json"
    with pytest.raises(SSDError, match="the kernel's own connection file") as refused:
        choose_connection_file(str(own), kernel_id, str(own), other)
    assert refused.value.code == "usage"
    elsewhere = tmp_path / "mine.json"
    assert choose_connection_file(str(elsewhere), kernel_id, str(own), other) == elsewhere


# -- console --------------------------------------------------------------------------------

STAND_IN = '''#!{python}
"""A stand-in for `jupyter console` (which ssd does not depend on): it runs one cell on the kernel
of the connection file it is given, as `jupyter console --existing FILE` would, and exits."""
import os, sys
from jupyter_client.blocking.client import BlockingKernelClient

if sys.argv[1:] == ["console", "--version"]:
    print("6.6.3")
    sys.exit(0)
assert sys.argv[1:3] == ["console", "--existing"], sys.argv
client = BlockingKernelClient()
client.load_connection_file(sys.argv[3])
client.start_channels()
client.wait_for_ready(timeout=30)
printed = []
hook = lambda msg: printed.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None
client.execute_interactive("import os; print(os.getpid())", timeout=30, output_hook=hook)
client.stop_channels()
with open(os.environ["STAND_IN_OUTPUT"], "w") as out:
    out.write("".join(printed))
'''


def test_console_without_jupyter_console_leaves_the_kernel_running(host: Host) -> None:
    """No jupyter on PATH: say so, print the exact command and the stop command, keep the kernel (exit 1)."""
    bare_path = "/usr/bin:/bin"
    if shutil.which("jupyter", path=bare_path):
        pytest.skip("a system-wide jupyter is installed here")
    result = host.ctl("console", host.daemon.host, "sci", "--kind", "ipykernel", path=bare_path)
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    (kernel,) = host.kernels()
    path = host.runtime / f"kernel-ssd-{kernel['kernel_id']}.json"
    assert "ssd-ctl: error: jupyter console is not installed here" in result.stderr
    assert f"jupyter console --existing {path}\n" in result.stderr
    assert f"ssd-ctl stop {host.daemon.host} {kernel['kernel_id'][:8]}" in result.stderr
    check_classic_file(path)
    assert host.ctl("stop", host.daemon.host, kernel["kernel_id"]).returncode == 0
    assert not path.exists()


@pytest.mark.parametrize("keep", [False, True])
def test_console_runs_on_the_new_kernel_then_stops_it_unless_keep(host: Host, keep: bool) -> None:
    """console runs `jupyter console --existing FILE` (a stand-in here); afterwards the kernel stops, or stays."""
    bin_dir = host.tmp / f"bin-{keep}"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "jupyter"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    output = host.tmp / f"console-{keep}.out"
    keep_flag = ["--keep"] if keep else []
    result = host.ctl(
        "console", host.daemon.host, "sci", *keep_flag, path=str(bin_dir), extra={"STAND_IN_OUTPUT": str(output)}
    )
    assert result.returncode == 0, result.stderr
    kernel_id = result.stdout.split()[1]
    pid = int(output.read_text())  # the console's cell ran in the kernel ssd started
    if keep:
        assert f"kernel {kernel_id} keeps running; stop it with: ssd-ctl stop" in result.stdout
        assert [k["pid"] for k in host.kernels()] == [pid]
        assert host.ctl("stop", host.daemon.host, kernel_id).returncode == 0
    else:
        assert f"stopped kernel {kernel_id}" in result.stdout
        assert host.kernels() == []
    eventually(lambda: process_gone(pid), "the kernel process gone", timeout=10)
