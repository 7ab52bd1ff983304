"""The Spyder plugin on a cluster's login node: a real Spyder (headless), a real system-mode daemon offering
kernels in jobs of a real one-node Slurm (tests/slurmcluster.py), a real user, real kernels in real jobs.

The tests run in order on one Spyder, daemon and cluster (spyderenv.py sets up the environment Spyder and
the client library read, once per run).
"""

from __future__ import annotations

from spyderenv import CLIENT_DIR  # first: the environment Spyder reads at its import

# isort: split

from collections.abc import Iterator
from typing import Any

import pytest
from envfixtures import public_dir
from kerneltools import give_env
from slurm.daemonjobs import hold_node, jobs, release
from slurmcluster import SlurmCluster, cluster_for_tests
from spyderdriver import click, log_in, run, screenshot, wait_ready
from spyderhost import SpyderWorld, announcing_system_daemon, unique_name
from users import users

from ssd.spyder.dialogs import ChoiceDialog
from ssd.spyder.slurmdialog import StartDialog

pytestmark = [
    pytest.mark.root,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # Spyder's own, as in test_spyder_plugin.py
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    # A second window in the process (after test_spyder_plugin.py's): Spyder's global registry of toolbars
    # still names the first one's, and Spyder warns that the new one replaces it.
    pytest.mark.filterwarnings("ignore:There already exists a reference:UserWarning"),
]

LIMITS = {"SSD_SLURM_DEFAULT_TIME": "5", "SSD_SLURM_MAX_TIME": "10", "SSD_SLURM_MAX_CPUS": "1"}


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> None:
    """As in test_spyder_plugin.py: consoles' threads live across tests; ``world`` checks the plugin's own."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    """The one-node Slurm (root only; CI installs it)."""
    with cluster_for_tests() as running:
        yield running


@pytest.fixture(scope="module")
def world(qapp: object, cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpyderWorld]:
    """Spyder with the plugin, a daemon offering Slurm jobs announcing NAME on loopback, a user owning "sci"."""
    from spyderflows import own_threads
    from spyderwindow import spyder_window

    tmp = tmp_path_factory.mktemp("spyder-slurm")
    slurm = {"SSD_SLURM_ENABLED": "true", "SSD_SLURM_CONF": str(cluster.conf), "SSD_SLURM_LOGIN_ADDRESS": "127.0.0.1"}
    name = unique_name("slurm")
    with users(1) as (alice,), public_dir() as where:
        prefix = give_env(alice, where)
        daemon = announcing_system_daemon(tmp / "daemon", name, extra_env=slurm | LIMITS)
        try:
            with spyder_window() as window:
                yield SpyderWorld(window, daemon, name, alice, prefix, tmp, CLIENT_DIR)
        finally:
            daemon.stop_and_check()
    assert not own_threads(), f"the plugin left threads: {own_threads()}"


def _ask_for_a_job(world: SpyderWorld, qtbot: Any) -> StartDialog:
    """New console on "sci": the dialog that asks where the kernel runs."""
    log_in(world, qtbot)
    pane, controller = world.window.pane, world.window.plugin.controller
    pane.select_host(world.name)
    qtbot.waitUntil(lambda: any(e.name == "sci" for e in pane.envs), timeout=20000)
    pane.select_env("sci")
    click(qtbot, pane.console_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, StartDialog) and controller.dialog.isVisible(), timeout=10000)
    dialog: StartDialog = controller.dialog
    return dialog


def _queued_line(world: SpyderWorld) -> Any:
    """The pane's one line of a start waiting for its job."""
    (line,) = world.window.plugin.controller.jobs.waiting.values()
    return line


def test_the_job_form_has_the_hosts_defaults_and_shows_its_refusal(
    world: SpyderWorld, qtbot: Any, cluster: SlurmCluster
) -> None:
    """A host offering Slurm asks where: its default time and cpus in the form, cpus capped at its limit; a time
    over its limit is refused in the host's words, in the dialog, with no job submitted."""
    dialog = _ask_for_a_job(world, qtbot)
    assert dialog.job.isChecked()
    assert (dialog.time.text(), dialog.cpus.value(), dialog.cpus.maximum()) == ("5", 1, 1)
    assert dialog.gpus.maximum() == 0  # the host's max_gpus: none may be asked for
    dialog.time.setText("20")
    click(qtbot, dialog.start_button)
    qtbot.waitUntil(lambda: "over this host's limit" in dialog.error.text(), timeout=20000)
    assert "slurm.max_time" in dialog.error.text(), dialog.error.text()
    assert dialog.isVisible()
    assert dialog.start_button.isEnabled()
    screenshot(dialog, "spyder-slurm-form")
    assert jobs(cluster) == []
    dialog.reject()


def test_queued_while_the_node_is_held_then_a_console_in_the_job(
    world: SpyderWorld, qtbot: Any, cluster: SlurmCluster
) -> None:
    """The only node held by another job: the pane shows the start queued with its job id and Slurm's reason;
    once the node is free the console opens and runs code in that job, as the user."""
    holder = hold_node(cluster)
    dialog = _ask_for_a_job(world, qtbot)
    click(qtbot, dialog.start_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=20000)
    line = _queued_line(world)
    qtbot.waitUntil(lambda: "queued: job " in line.label.text(), timeout=20000)
    text = line.label.text()
    assert "(Slurm: PENDING)" in text, text
    job_id = text.split("queued: job ")[1].split(",")[0]
    screenshot(world.window.pane, "spyder-slurm-queued")
    consoles = world.window.plugin.consoles
    before = len(consoles.consoles)
    release(cluster, holder)
    qtbot.waitUntil(lambda: len(consoles.consoles) > before, timeout=40000)
    console = consoles.consoles[-1]
    shell = wait_ready(qtbot, console.client)
    code = "import os; print('JOB', os.getuid(), os.environ.get('SLURM_JOB_ID'))"
    run(qtbot, shell, code, f"JOB {world.user.uid} {job_id}")
    assert not world.window.plugin.controller.jobs.waiting


def test_a_job_that_ends_is_shown_in_its_console_with_slurms_reason(
    world: SpyderWorld, qtbot: Any, cluster: SlurmCluster
) -> None:
    """The console's job ends under it (scancel by the admin here; a time limit alike): the console says so,
    with Slurm's reason."""
    from spyderdriver import console_text

    consoles = world.window.plugin.consoles
    console = consoles.consoles[-1]
    (job_id,) = [line.split()[0] for line in jobs(cluster)]
    cluster.run("scancel", job_id)
    shell = console.client.shellwidget
    ended = f"the kernel's Slurm job {job_id} ended: the job was cancelled (scancel)"
    qtbot.waitUntil(lambda: ended in console_text(shell), timeout=30000)
    world.window.ipyconsole.get_widget().close_client(client=console.client)
    qtbot.waitUntil(lambda: isinstance(consoles.pending_dialog, ChoiceDialog), timeout=10000)
    click(qtbot, consoles.pending_dialog.buttons["keep"])
    qtbot.waitUntil(lambda: console not in consoles.consoles, timeout=10000)


def test_cancel_while_queued_removes_the_job(world: SpyderWorld, qtbot: Any, cluster: SlurmCluster) -> None:
    """Cancel on a queued start: scancel through the kernel's shutdown; the pane says so, squeue is empty once
    the holding job is gone too, and no console opened."""
    holder = hold_node(cluster)
    consoles = world.window.plugin.consoles
    before = len(consoles.consoles)
    dialog = _ask_for_a_job(world, qtbot)
    click(qtbot, dialog.start_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=20000)
    line = _queued_line(world)
    qtbot.waitUntil(lambda: "queued: job " in line.label.text(), timeout=20000)
    job_id = line.label.text().split("queued: job ")[1].split(",")[0]
    click(qtbot, line.cancel_button)
    pane = world.window.pane
    qtbot.waitUntil(lambda: "Start cancelled" in pane.status.text(), timeout=30000)
    assert f"job {job_id} removed from Slurm's queue" in pane.status.text(), pane.status.text()
    assert not world.window.plugin.controller.jobs.waiting
    assert all(not line.startswith(f"{job_id} ") for line in jobs(cluster))
    release(cluster, holder)
    qtbot.waitUntil(lambda: jobs(cluster) == [], timeout=20000)
    assert len(consoles.consoles) == before
