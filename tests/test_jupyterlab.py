"""JupyterLab in headless Chromium against a real daemon: the launcher tile and the start-error dialog.

Debian's ``chromium`` driven through Playwright's Python API (never ``playwright install``: the browser is
the system's). One launch of Lab: the launcher shows the ssd kernelspec with the Python logo and a
display name that reads well; a kernelspec whose host does not answer gives a dialog with ssd's message,
the command that fixes it on a line of its own. Both are saved as screenshots in docs/images/.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyterhost import Host, JupyterServer, make_host, write_spec

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
WAIT_MS = 90_000  # selectors, on a loaded 2-core machine


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """The daemon and an ssd kernelspec written by ssd-ctl."""
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    made = make_host(tmp_path_factory.mktemp("jupyterlab"))
    yield made
    made.daemon.stop_and_check()


# Lab's first load in a cold browser on a busy CI machine takes well over the suite's 60 s default.
@pytest.mark.timeout(240)
def test_the_launcher_and_the_start_error_dialog(host: Host, tmp_path: Path) -> None:
    """The launcher tile: Python logo, "Python 3.11 · sci · NAME"; starting a notebook on a host that does
    not answer: Lab's dialog says what failed and shows ``ssd-ctl info HOST`` on a line of its own."""
    sync_api = pytest.importorskip("playwright.sync_api")
    write_spec(host, "ssd-nowhere", "Python 3.11 · sci · nowhere", host="127.0.0.1:9")  # no logo: a letter
    server = JupyterServer(host, tmp_path)
    IMAGES.mkdir(parents=True, exist_ok=True)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(WAIT_MS)
                page.goto(f"http://127.0.0.1:{server.port}/lab?token={server.token}")
                section = page.locator(".jp-Launcher-section").filter(has_text="Notebook")
                tile = section.locator(f'.jp-LauncherCard[title^="{_display_name(host)}"]')
                tile.wait_for()
                assert tile.locator(".jp-LauncherCard-label").inner_text() == _display_name(host)
                assert tile.locator(".jp-LauncherCard-icon img").count() == 1  # the logo, not a letter
                page.screenshot(path=str(IMAGES / "jupyterlab-launcher.png"))

                section.locator('.jp-LauncherCard[title^="Python 3.11 · sci · nowhere"]').click()
                dialog = page.locator(".jp-Dialog-content").filter(has_text="ssd could not start a kernel")
                dialog.wait_for()
                text = dialog.locator(".jp-Dialog-body").inner_text()
                page.screenshot(path=str(IMAGES / "jupyterlab-start-error.png"))
            finally:
                browser.close()
    finally:
        server.stop()
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    assert "ssd could not start a kernel on 127.0.0.1:9 (environment sci)." in lines
    assert "    ssd-ctl info 127.0.0.1:9" in lines, lines


def _display_name(host: Host) -> str:
    """The display name ssd-ctl kernelspec install wrote for the host's spec."""
    spec = host.jupyter / "share" / "jupyter" / "kernels" / host.spec / "kernel.json"
    return str(json.loads(spec.read_text())["display_name"])
