"""ssd-ctl console as a user runs it: a real daemon and kernels, `jupyter console` absent or a stand-in.

One user-mode daemon serves this module (tests/ctl/conftest.py); every test stops
the kernels it starts, and a fixture stops any a failed test left behind.
"""

from __future__ import annotations

import shutil
import sys

import pytest
from support.ctlhost import (
    Host,
    check_classic_file,
    no_traceback,
    process_gone,
)
from support.eventually import eventually

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
