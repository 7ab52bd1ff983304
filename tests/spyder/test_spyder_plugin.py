"""The Spyder plugin end to end, as a user drives it: a real Spyder (headless), a real system-mode daemon
found by discovery on loopback, a real user and password, real kernels in a real environment.

The tests run in order on one session's Spyder and daemon (starting them is most of the time): each
leaves the state the next one starts from, and each checks its own step.
"""

from __future__ import annotations

from spyderenv import CLIENT_DIR  # first: the environment Spyder reads at its import

# isort: split

import json
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envfixtures import (
    broken_kernel_venv,
    conda_copy,
    list_in_environments_txt,
    make_conda_style,
    make_venv,
    public_dir,
)
from kerneltools import give_env
from pytestqt.exceptions import TimeoutError as QtWaitTimeout
from spyderdriver import (
    click,
    console_text,
    log_in,
    namespace,
    run,
    screenshot,
    submit_password,
    wait_ready,
)
from spyderflows import CONDA_STAND_IN, add_host_by_address, env_row, kernels_of, open_console, own_env, own_threads
from spyderhost import SpyderWorld, announcing_system_daemon, capture, namespace_beside, unique_name
from support.ci import require_root
from users import SSD, chown_tree, users

from ssd.spyder.dialogs import ChoiceDialog, LoginDialog, ProgressDialog, TrustDialog
from ssd.spyder.localend import curve_capable

pytestmark = [
    pytest.mark.root,
    # Spyder 6.1.8 reads its HTML templates at import without closing them, and Qt objects it leaves to the
    # garbage collector warn when collected: not this plugin's doing.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> None:
    """Replaces the per-test check of tests/conftest.py: a console's jupyter_client threads live as long as
    the console, across tests here; ``world`` checks at its end that the plugin left no thread of its own."""


@pytest.fixture(scope="module")
def world(qapp: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpyderWorld]:
    """Spyder with the plugin, a daemon announcing NAME on loopback, a user owning env "sci"."""
    require_root()
    from spyderwindow import spyder_window

    tmp = tmp_path_factory.mktemp("spyder-world")
    name = unique_name("spy")
    with users(1) as (alice,), public_dir() as where:
        prefix = give_env(alice, where)
        daemon = announcing_system_daemon(tmp / "daemon", name)
        world: SpyderWorld | None = None
        try:
            with spyder_window() as window:
                world = SpyderWorld(window, daemon, name, alice, prefix, tmp, CLIENT_DIR)
                yield world
        finally:
            current = world.daemon if world is not None else daemon  # the test that restarts it replaces it
            if current.process.poll() is None:
                current.stop_and_check()
    assert not own_threads(), f"the plugin left threads: {own_threads()}"


def test_pane_lists_the_daemon_found_by_discovery(world: SpyderWorld, qtbot: Any) -> None:
    """The daemon announcing itself on loopback appears in the pane: new (not trusted), this machine."""
    pane = world.window.pane
    qtbot.waitUntil(lambda: world.name in pane.hosts, timeout=20000)
    row = pane.hosts[world.name]
    assert row.spec.port == world.daemon.port
    assert row.trust == "new"
    assert row.local
    assert row.fingerprint == world.daemon.info["fingerprint"]
    screenshot(pane, "spyder-pane")


def test_first_contact_shows_the_fingerprint_and_trust_pins_it(world: SpyderWorld, qtbot: Any) -> None:
    """Connect: the dialog shows the server's real fingerprint; Trust pins that key, then login is asked."""
    pane, controller = world.window.pane, world.window.plugin.controller
    pane.select_host(world.name)
    click(qtbot, pane.connect_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, TrustDialog), timeout=20000)
    assert str(world.daemon.info["fingerprint"]) in controller.dialog.label.text()
    assert not (world.client_dir / "known_hosts").exists()
    screenshot(controller.dialog, "spyder-trust")
    click(qtbot, controller.dialog.trust_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, LoginDialog), timeout=20000)
    assert world.name.lower() in (world.client_dir / "known_hosts").read_text()


def test_login_says_what_is_wrong_then_logs_in_and_by_key_after(world: SpyderWorld, qtbot: Any) -> None:
    """A wrong password is named as such in the dialog; the right one logs in and authorizes the key."""
    controller = world.window.plugin.controller
    dialog = controller.dialog
    assert isinstance(dialog, LoginDialog)
    dialog.user.setText(world.user.name)
    dialog.password.setText("not-the-password")
    click(qtbot, dialog.login_button)
    qtbot.waitUntil(lambda: dialog.error.text() != "", timeout=40000)
    assert "password" in dialog.error.text() or "wait" in dialog.error.text()
    dialog.password.setText("")
    screenshot(dialog, "spyder-login")
    submit_password(world, qtbot, dialog, world.user.password)
    assert world.window.pane.users[world.name] == world.user.name
    authorized = world.user.home / ".config" / "ssd" / "authorized_keys"
    assert authorized.exists(), "copy-id did not authorize the key"


def test_environments_with_this_spyders_verdict(world: SpyderWorld, qtbot: Any) -> None:
    """The env list: the spyder-kernels env works with this Spyder; a bare venv is flagged, with the fix."""
    bare = make_conda_style(make_venv(world.prefix.parent / "bare"))  # Python, but no spyder-kernels
    chown_tree(bare, world.user)
    list_in_environments_txt(world.user.home, bare)
    chown_tree(world.user.home / ".conda", world.user)
    log_in(world, qtbot)
    pane = world.window.pane
    click(qtbot, pane.refresh_button)
    qtbot.waitUntil(lambda: {e.name for e in pane.envs} >= {"sci", "bare"}, timeout=20000)  # {pane.status.text()}
    by_name = {e.name: e for e in pane.envs}
    assert by_name["sci"].verdict.ok, by_name["sci"].verdict
    assert not by_name["bare"].verdict.ok
    assert by_name["bare"].verdict.fix == "spyder-kernels>=3.1.0,<3.2.0 ipython<9.18"
    screenshot(pane, "spyder-envs")


def test_install_spyder_kernels_from_the_pane_fixes_a_broken_ipython_with_progress(
    world: SpyderWorld, qtbot: Any
) -> None:
    """An env with the real broken pair (spyder-kernels 3.1.6, IPython 9.18.1) is flagged; Install runs pip there
    as the user, its lines reach the progress dialog through env_progress, and the env serves this Spyder after."""
    broken = conda_copy(broken_kernel_venv(), world.prefix.parent / "broken")
    subprocess.run([f"{broken}/bin/python", "-I", "-m", "ensurepip"], check=True, capture_output=True, timeout=60)
    own_env(world, broken)
    log_in(world, qtbot)
    row = env_row(world, qtbot, "broken")
    assert not row.verdict.ok
    assert row.verdict.reason.startswith("IPython 9.18.1 breaks spyder-kernels 3.1.6"), row.verdict.reason
    assert row.verdict.fix == "ipython<9.18"
    pane, controller = world.window.pane, world.window.plugin.controller
    pane.select_env("broken")
    click(qtbot, pane.install_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, ProgressDialog), timeout=10000)
    dialog = controller.dialog
    qtbot.waitUntil(lambda: dialog.line.text() != "", timeout=30000)  # pip's first line, through env_progress
    screenshot(dialog, "spyder-install")
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=50000)
    assert "done" in pane.status.text(), pane.status.text()
    assert (dialog.bar.maximum(), dialog.bar.value()) == (100, 100)
    assert "Successfully installed ipython-9.17" in dialog.line.text(), dialog.line.text()
    qtbot.waitUntil(lambda: any(e.name == "broken" and e.verdict.ok for e in pane.envs), timeout=20000)


def test_cancel_an_install_into_a_conda_env_with_a_stand_in_conda(world: SpyderWorld, qtbot: Any) -> None:
    """Install into a conda env runs that root's conda (a hanging STAND-IN here); Cancel in the progress dialog
    ends the operation as cancelled and no process of the tool is left."""
    import psutil

    root = make_conda_style(world.user.home / "miniconda3")
    make_conda_style(make_venv(root / "envs" / "slow"))
    (root / "condabin").mkdir()
    (root / "condabin" / "conda").write_text(CONDA_STAND_IN)
    (root / "condabin" / "conda").chmod(0o755)
    chown_tree(root, world.user)

    def tool() -> list[psutil.Process]:
        where = str(root / "condabin")
        return [p for p in psutil.process_iter(["cmdline"]) if where in " ".join(p.info["cmdline"] or [])]

    log_in(world, qtbot)
    assert not env_row(world, qtbot, "slow").verdict.ok
    pane, controller = world.window.pane, world.window.plugin.controller
    pane.select_env("slow")
    click(qtbot, pane.install_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, ProgressDialog), timeout=10000)
    dialog = controller.dialog
    qtbot.waitUntil(lambda: "Collecting package metadata" in dialog.line.text(), timeout=30000)
    assert tool(), "the stand-in conda is not running"
    click(qtbot, dialog.cancel_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=20000)
    assert "cancelled" in pane.status.text(), pane.status.text()
    qtbot.waitUntil(lambda: not tool(), timeout=10000)


def test_new_console_runs_as_the_user_in_the_env_and_the_variable_explorer_shows_it(
    world: SpyderWorld, qtbot: Any
) -> None:
    """New console: the code runs as the user, in the env, in the remote home; the tab says env@host."""
    log_in(world, qtbot)
    console = open_console(world, qtbot)
    shell = console.client.shellwidget
    text = run(qtbot, shell, "import os, sys; uid = os.getuid(); print('ID', uid, sys.prefix, os.getcwd())", "ID ")
    assert f"ID {world.user.uid} {world.prefix} {world.user.home}" in text
    qtbot.waitUntil(lambda: "uid" in namespace(world, shell), timeout=30000)
    tabs = world.window.ipyconsole.get_widget().tabwidget
    assert f"sci@{world.name}" in tabs.tabText(tabs.indexOf(console.client))
    assert console.connection.get("curve_publickey"), "the console did not get the CURVE relay's keys"
    assert console.end.tunnel is None, "a capable jupyter_client connects to the relay directly, no tunnel"
    assert json.loads(console.end.file.read_text())["curve_publickey"] == console.connection["curve_publickey"]
    screenshot(world.window.main, "spyder-console")


def test_interrupt_button_stops_a_sleep_and_the_kernel_lives_on(world: SpyderWorld, qtbot: Any) -> None:
    """The console's stop button on ``time.sleep(60)``: the cell ends with KeyboardInterrupt long before its
    60 s, the same kernel process runs code after. (Through the comm, as Spyder interrupts its own kernels,
    the signal the kernel sends itself could land on its control thread and the sleep went on.)"""
    console = world.window.plugin.consoles.consoles[-1]
    shell = console.client.shellwidget
    (pid,) = [k.pid for k in kernels_of(world) if k.kernel_id == console.kernel_id]
    shell.execute("import time; print('SLEE' + 'PING'); time.sleep(60)")
    stop = world.window.ipyconsole.get_widget().stop_button
    # As a user: the stop button is clicked once Spyder has enabled it (a disabled one does nothing) and the cell
    # runs (its output, not the echo of its input: a SIGINT that comes before the cell starts is ignored).
    qtbot.waitUntil(lambda: "SLEEPING" in console_text(shell) and stop.isEnabled(), timeout=30000)
    click(qtbot, stop)
    try:
        qtbot.waitUntil(lambda: "KeyboardInterrupt" in console_text(shell) and not shell._executing, timeout=20000)
    except QtWaitTimeout:
        said = f"{world.window.pane.status.text()}\n{console_text(shell)[-600:]}"
        raise AssertionError(f"not interrupted: {said}") from None
    text = run(qtbot, shell, "import os; print('AFTER', os.getpid())", "AFTER ")
    assert text.split("AFTER ")[-1].split()[0] == str(pid), "the interrupt must not restart the kernel"


def test_forced_tunnel_fallback_console_runs_code_and_closing_ends_the_tunnel(
    world: SpyderWorld, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process tunnel FORCED (SSD_SPYDER_TUNNEL=1): this Spyder's jupyter_client reads CURVE keys, so only
    forcing reaches the fallback. The console's file is then a classic one on ipc sockets in a private folder,
    code runs as the user, the Variable Explorer follows; closing the console ends the tunnel and its folder."""
    assert curve_capable(), "Spyder 6.1.8's jupyter_client 8.10 reads CURVE keys: no fallback unless forced"
    monkeypatch.setenv("SSD_SPYDER_TUNNEL", "1")
    console = open_console(world, qtbot)
    info = json.loads(console.end.file.read_text())
    assert console.end.tunnel is not None
    assert "curve_publickey" not in info
    assert info["transport"] == "ipc"
    folder = Path(info["ip"]).parent
    assert folder.stat().st_mode & 0o777 == 0o700
    shell = console.client.shellwidget
    run(qtbot, shell, "import os; tunneled = os.getuid(); print('TUN', tunneled)", f"TUN {world.user.uid}")
    qtbot.waitUntil(lambda: "tunneled" in namespace(world, shell), timeout=30000)
    consoles = world.window.plugin.consoles
    world.window.ipyconsole.get_widget().close_client(client=console.client)
    qtbot.waitUntil(lambda: isinstance(consoles.pending_dialog, ChoiceDialog), timeout=10000)
    click(qtbot, consoles.pending_dialog.buttons["shutdown"])
    qtbot.waitUntil(lambda: all(k.kernel_id != console.kernel_id for k in kernels_of(world)), timeout=30000)
    assert not folder.exists()
    assert not console.end.file.exists()


def test_restart_from_the_menu_gives_a_new_process_and_a_live_variable_explorer(world: SpyderWorld, qtbot: Any) -> None:
    """Restart (the console's action): a new kernel process; the Variable Explorer follows it."""
    console = world.window.plugin.consoles.consoles[-1]
    (before,) = [k.pid for k in kernels_of(world) if k.kernel_id == console.kernel_id]
    handler = console.client.kernel_handler
    world.window.ipyconsole.get_widget().restart_action.trigger()
    try:
        qtbot.waitUntil(lambda: console.client.kernel_handler not in (None, handler), timeout=30000)
    except QtWaitTimeout:
        raise AssertionError(f"not restarted: {world.window.pane.status.text()}") from None
    shell = wait_ready(qtbot, console.client)
    text = run(qtbot, shell, "import os; after_restart = 1; print('NEWPID', os.getpid())", "NEWPID ")
    assert text.split("NEWPID ")[-1].split()[0] != str(before)
    qtbot.waitUntil(lambda: "after_restart" in namespace(world, shell), timeout=30000)
    assert "uid" not in namespace(world, shell)


def test_closing_the_console_asks_and_shuts_the_kernel_down(world: SpyderWorld, qtbot: Any) -> None:
    """Closing the tab asks; "Shut down" stops the kernel on the host."""
    consoles = world.window.plugin.consoles
    console = consoles.consoles[-1]
    assert any(k.kernel_id == console.kernel_id for k in kernels_of(world))
    world.window.ipyconsole.get_widget().close_client(client=console.client)
    qtbot.waitUntil(lambda: isinstance(consoles.pending_dialog, ChoiceDialog), timeout=10000)
    click(qtbot, consoles.pending_dialog.buttons["shutdown"])
    qtbot.waitUntil(lambda: all(k.kernel_id != console.kernel_id for k in kernels_of(world)), timeout=30000)


def test_attach_to_a_kernel_started_by_ssd_ctl(world: SpyderWorld, qtbot: Any) -> None:
    """A kernel started with ``ssd-ctl start`` shows in the pane; Attach gives a console on it."""
    ctl = os.path.join(os.path.dirname(SSD), "ssd-ctl")
    started = subprocess.run(
        [ctl, "start", world.daemon.host, "sci", "--json", "--trust"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    kernel_id = json.loads(started.stdout)["kernel"]["kernel_id"]
    pane, consoles = world.window.pane, world.window.plugin.consoles
    click(qtbot, pane.refresh_button)
    qtbot.waitUntil(lambda: any(k.kernel_id == kernel_id for k in pane.kernels), timeout=20000)
    pane.select_kernel(kernel_id)
    click(qtbot, pane.attach_button)
    qtbot.waitUntil(lambda: any(c.kernel_id == kernel_id for c in consoles.consoles), timeout=30000)
    shell = wait_ready(qtbot, consoles.consoles[-1].client)
    run(qtbot, shell, "import os; print('ATTACHED', os.getuid())", f"ATTACHED {world.user.uid}")


def test_console_recovers_after_the_daemon_restarts(world: SpyderWorld, qtbot: Any) -> None:
    """The daemon goes away and comes back (on a new port): the same console runs code again."""
    console = world.window.plugin.consoles.consoles[-1]
    world.daemon.stop_and_check()
    world.daemon = announcing_system_daemon(world.tmp / "daemon", world.name, init=False)
    pane = world.window.pane
    qtbot.waitUntil(lambda: pane.hosts[world.name].spec.port == world.daemon.port, timeout=30000)
    shell = wait_ready(qtbot, console.client)
    run(qtbot, shell, "print('BACK', 20 + 22)", "BACK 42", timeout=60000)
    assert console in world.window.plugin.consoles.consoles


def test_console_traffic_to_a_host_in_a_network_namespace_holds_no_marker_in_clear(
    world: SpyderWorld, qtbot: Any
) -> None:
    """A daemon in a network namespace, added by address: a console's code, output and Variable Explorer carry a
    marker across the veth, where tcpdump sees plain bytes sent beside them but never the marker."""
    marker, plain = f"SECRET-{secrets.token_hex(8)}", f"CLEAR-{secrets.token_hex(8)}"
    consoles = world.window.plugin.consoles
    with namespace_beside("sp") as (ns, _here):
        daemon = announcing_system_daemon(world.tmp / "netns-daemon", unique_name("ns"), bind=ns.address, netns=ns)
        try:
            address = f"{ns.address}:{daemon.port}"
            with capture(ns, world.tmp / "spyder.pcap") as pcap:
                with socket.create_connection((ns.address, daemon.port), timeout=5) as sock:
                    sock.sendall(plain.encode())  # the control: the capture does see payloads
                add_host_by_address(world, qtbot, address)
                console = open_console(world, qtbot, host=address)
                shell = console.client.shellwidget
                run(qtbot, shell, f"secret = {marker!r}; print('OUT', secret)", f"OUT {marker}")
                qtbot.waitUntil(lambda: "secret" in namespace(world, shell), timeout=30000)
                world.window.ipyconsole.get_widget().close_client(client=console.client)
                qtbot.waitUntil(lambda: isinstance(consoles.pending_dialog, ChoiceDialog), timeout=10000)
                click(qtbot, consoles.pending_dialog.buttons["shutdown"])
                qtbot.waitUntil(lambda: "shut down" in world.window.pane.status.text(), timeout=30000)
            wire = pcap.read_bytes()
        finally:
            daemon.stop_and_check()
    assert plain.encode() in wire
    assert marker.encode() not in wire


def test_quitting_spyder_lists_the_kernels_and_shuts_them_down(world: SpyderWorld, qtbot: Any) -> None:
    """Quit: the dialog lists the ssd kernels this Spyder opened; "Shut down" stops them on the host."""
    from qtpy.QtCore import QTimer

    plugin = world.window.plugin
    kernel_ids = {c.kernel_id for c in plugin.consoles.consoles}
    assert kernel_ids

    def answer() -> None:
        dialog = plugin.quit_dialog
        if dialog is None or not dialog.isVisible():
            QTimer.singleShot(50, answer)
            return
        screenshot(dialog, "spyder-quit")
        dialog.buttons["shutdown"].click()

    QTimer.singleShot(0, answer)
    assert plugin.can_close()
    assert all(k.kernel_id not in kernel_ids for k in kernels_of(world))
