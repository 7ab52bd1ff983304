"""Finding 8: no process ssd starts imports a module from its working directory.

Root starts ``ssd run --system`` from a directory a user can write (their project folder) and
that user has planted ``ssd/``, ``zmq/``, ``msgspec/`` and ``pamela/`` there and in their home.
Each planted package records that it ran (pid, uid, argv) and then hands over to the real one,
so that on a vulnerable daemon everything still works and the test fails on the record alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from envfixtures import public_dir
from kerneltools import give_env
from support.ci import require_root
from support.daemon import Daemon, new_client
from users import SSD, User, chown_tree, login, stop_and_audit, users

# Written into every planted package: record, then step aside for the real module.
PLANTED = """\
import importlib, os, sys
_top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(_top, "IMPORTED-" + __name__), "a") as _record:
    _record.write(f"pid {os.getpid()} uid {os.getuid()} argv {sys.argv}\\n")
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.realpath(_top)]
del sys.modules[__name__]
sys.modules[__name__] = importlib.import_module(__name__)
"""
# Kernels are the user's own Python in the user's cwd (cwd on sys.path is a kernel's feature), so the
# home gets only what a kernel never imports; the daemon's cwd gets its dependencies too.
IN_HOME = ("ssd", "msgspec", "pamela")
IN_DAEMON_CWD = ("ssd", "zmq", "msgspec", "pamela")


def plant(folder: Path, names: tuple[str, ...], owner: User) -> None:
    """Plant a recording package for each of *names* in *folder*, all owned by *owner*."""
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(PLANTED)
    chown_tree(folder, owner)


def records(*folders: Path) -> dict[str, str]:
    """What the planted packages recorded: file path -> its lines."""
    return {str(path): path.read_text() for folder in folders for path in folder.glob("IMPORTED-*")}


def start_system_daemon_in(cwd: Path, tmp: Path) -> Daemon:
    """``ssd init --system`` and ``ssd run --system`` (the console script, as root types it) from *cwd*."""
    config_dir, state_dir = tmp / "server-config", tmp / "server-state"
    env = {**os.environ, "SSD_CONFIG_DIR": str(config_dir), "SSD_STATE_DIR": str(state_dir)}
    subprocess.run([SSD, "init", "--system"], env=env, cwd=cwd, capture_output=True, check=True, timeout=30)
    log_path = tmp / "daemon.log"
    argv = [SSD, "run", "--system", "--bind", "127.0.0.1", "--port", "0", "--no-announce", "--log-level", "debug"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log)
    return Daemon(process, config_dir, state_dir, log_path).wait_ready()


def test_no_worker_or_helper_imports_from_the_daemon_cwd_or_the_users_home(tmp_path: Path) -> None:
    """Auth pool (root), env and kernel workers and the copy-id helper (the user) run; nothing planted runs."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        project = alice.home / "project"
        plant(project, IN_DAEMON_CWD, alice)
        plant(alice.home, IN_HOME, alice)
        give_env(alice, where)
        daemon = start_system_daemon_in(project, tmp_path)
        try:
            client = new_client(daemon, tmp_path / "client", timeout=60)
            client.connect()
            try:
                login(client, alice.name, alice.password)  # the auth pool: root, started by the daemon
                assert client.request("env_list_request")["envs"]  # alice's env worker
                assert client.key_add("isolation test").user == alice.name  # the keyfile helper as alice
                kernel = client.kernel_start("sci", "ipykernel").kernel  # alice's kernel worker
                client.kernel_shutdown(kernel.kernel_id)
            finally:
                client.close()
        finally:
            stop_and_audit(daemon)
        assert records(project, alice.home) == {}


def test_the_ssd_command_drops_the_cwd_from_sys_path(tmp_path: Path) -> None:
    """``python -m ssd`` (like ``-c``) puts the cwd first on sys.path; ssd's main() removes it before it
    imports anything lazily."""
    (tmp_path / "lazily_imported.py").write_text("open('IMPORTED-lazily_imported', 'w').close()\n")
    probe = "import sys; from ssd.cli import main; main(['config']); import lazily_imported"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert "ModuleNotFoundError: No module named 'lazily_imported'" in result.stderr, result.stderr
    assert records(tmp_path) == {}
