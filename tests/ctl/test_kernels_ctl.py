"""ssd-ctl's kernel commands as a user runs them: subprocesses against a real daemon and real kernels.

One user-mode daemon serves this module (the test user's own kernels, in a
conda-style copy of the cached kernel venv); every test stops the kernels it
starts, and a fixture stops any a failed test left behind. The console is in
test_console_ctl.py, the pure kernel-argument helpers in test_kernelargs.py.
"""

from __future__ import annotations

import json
import queue
import stat
from pathlib import Path

from envfixtures import expected, kernel_venv
from jupyter_client.blocking.client import BlockingKernelClient
from support.ctlhost import (
    Host,
    check_classic_file,
    kernel_client,
    no_traceback,
    process_gone,
    run_cell,
)
from support.eventually import eventually

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
