"""From "new console" to a ready console (first prompt, Variable Explorer ready): ssd's remote console
against Spyder's own new console on a local kernel in the same environment, in the same run.

Run as root with Spyder's environment (the one .ci/run builds, or any venv with ``ssd[spyder]``):
``QT_QPA_PLATFORM=offscreen /opt/ssd-ci/spyder/bin/python benchmarks/bench_spyder.py [--rounds 10]``.
It makes a user, starts a system-mode daemon on loopback and a real Spyder (the tests' window), then
opens and closes consoles alternately. Prints medians and the ratio; target: at most 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / d) for d in ("", "envs", "kernels", "spyder")]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["SSD_CLIENT_DIR"] = tempfile.mkdtemp(prefix="ssd-bench-client-")
os.environ["SSD_DISCOVERY_INTERFACES"] = "127.0.0.1"
_HOME = Path(tempfile.mkdtemp(prefix="ssd-bench-spyder-"))
os.environ["SPYDER_CONFDIR"] = str(_HOME / "config")
os.environ["SPYDER_PYTEST"] = "True"  # a clean Spyder configuration, no prompts
os.environ["JUPYTER_RUNTIME_DIR"] = str(_HOME / "runtime")

TARGET = 1.5


def kernel_venv() -> Path:
    """The tests' cached kernel venv (spyder-kernels and its dependencies)."""
    import envfixtures

    return envfixtures.kernel_venv()


class Bot:
    """The little of pytest-qt's qtbot that the tests' driver uses, for a script."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def waitUntil(self, predicate: Callable[[], object], timeout: int = 5000) -> None:
        """Process Qt events until *predicate* holds; TimeoutError after *timeout* ms."""
        deadline = time.monotonic() + timeout / 1000
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} ms")
            self.app.processEvents()
            time.sleep(0.002)

    def wait(self, ms: int) -> None:
        """Process Qt events for *ms* milliseconds."""
        deadline = time.monotonic() + ms / 1000
        while time.monotonic() < deadline:
            self.app.processEvents()
            time.sleep(0.002)

    def mouseClick(self, button: Any, _which: Any) -> None:
        """A click."""
        button.click()


def ready(world: Any, client: Any) -> bool:
    """First prompt shown, Spyder's configuration sent, the Variable Explorer holding this console."""
    shell = client.shellwidget
    if not (shell.spyder_kernel_ready and shell._prompt_html is not None and shell.is_kernel_configured):
        return False
    return world.window.variables.get_widget().get_widget_for_shellwidget(shell) is not None


def remote_round(world: Any, bot: Bot) -> float:
    """Click "New console" on the env; seconds until the console is ready; close it (shut down)."""
    pane, consoles = world.window.pane, world.window.plugin.consoles
    before = len(consoles.consoles)
    start = time.perf_counter()
    pane.console_button.click()
    bot.waitUntil(lambda: len(consoles.consoles) > before, 60000)
    client = consoles.consoles[-1].client
    bot.waitUntil(lambda: ready(world, client), 60000)
    took = time.perf_counter() - start
    world.window.ipyconsole.get_widget().close_client(client=client)
    return took


def local_round(world: Any, bot: Bot) -> float:
    """Spyder's own new console, its kernel local, in the same environment; seconds until ready; close it."""
    widget = world.window.ipyconsole.get_widget()
    # The venv the remote env is a copy of: the copy has conda metadata, and Spyder wants conda to activate it.
    python = str(kernel_venv() / "bin" / "python")
    start = time.perf_counter()
    client = widget.create_new_client(given_name="sci", path_to_custom_interpreter=python)  # as the Consoles menu
    bot.waitUntil(lambda: ready(world, client), 60000)
    took = time.perf_counter() - start
    widget.close_client(client=client)
    return took


def main() -> int:
    """Set up user, daemon and Spyder; alternate remote and local rounds; print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    from envfixtures import public_dir
    from kerneltools import give_env
    from qtpy.QtWidgets import QApplication
    from spyderdriver import log_in
    from spyderhost import SpyderWorld, announcing_system_daemon, unique_name
    from spyderwindow import spyder_window
    from users import users

    app = QApplication.instance() or QApplication([])
    bot = Bot(app)
    tmp = Path(tempfile.mkdtemp(prefix="ssd-bench-"))
    name = unique_name("bench")
    with users(1) as (alice,), public_dir() as where:
        prefix = give_env(alice, where)
        daemon = announcing_system_daemon(tmp / "daemon", name)
        try:
            with spyder_window() as window:
                world = SpyderWorld(window, daemon, name, alice, prefix, tmp, Path(os.environ["SSD_CLIENT_DIR"]))
                log_in(world, bot)
                window.plugin._setting("on_close", "shutdown")
                from spyder.config.manager import CONF

                # The test window has no Main interpreter plugin to fill this in; Spyder's own would.
                CONF.set("main_interpreter", "executable", str(kernel_venv() / "bin" / "python"))
                bot.waitUntil(lambda: any(e.name == "sci" for e in window.pane.envs), 20000)
                window.pane.select_env("sci")
                remote_round(world, bot)  # warm both paths once (imports, caches)
                local_round(world, bot)
                remote, local = [], []
                for index in range(args.rounds):
                    remote.append(remote_round(world, bot))
                    local.append(local_round(world, bot))
                    print(f"round {index + 1}: ssd {remote[-1]:.2f}s, local {local[-1]:.2f}s", file=sys.stderr)
        finally:
            daemon.stop_and_check()
    ratio = statistics.median(remote) / statistics.median(local)
    print(f"new console -> prompt and Variable Explorer ready, median of {args.rounds}:")
    print(f"  ssd (remote kernel over the CURVE relay): {statistics.median(remote):.2f} s")
    print(f"  Spyder's own (local kernel, same env):    {statistics.median(local):.2f} s")
    print(f"  ratio {ratio:.2f}x (target <= {TARGET}x): {'met' if ratio <= TARGET else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
