"""Real-browser tests of the operator console: Debian's headless Chromium driven by Playwright for
Python (``executable_path``: Playwright downloads no browser), against the real ``serve`` (uvicorn, a
process of its own) and the real simulator on loopback.

Chromium is installed with ``apt-get install -y chromium`` where it is missing and this runs as root
(as the suite documents for PostgreSQL); the tests skip, saying why, only when that cannot be done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.utils.pairing import recording_simulator
from tests.utils.servers import free_port
from tests.utils.waiting import wait_until
from worker.processes import start_in_new_group, stop_process_groups

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KEY = "browser-test-key-52aa"
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]


def _install_chromium() -> str | None:
    """Why Chromium cannot be had, or None once it is at CHROMIUM."""
    if Path(CHROMIUM).exists():
        return None
    if shutil.which("apt-get") is None:
        return "no /usr/bin/chromium and no apt-get to install it (Debian's `chromium` package)"
    if os.geteuid() != 0:
        return "no /usr/bin/chromium, and installing it needs root: `sudo apt-get install -y chromium`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                ["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
        if Path(CHROMIUM).exists():
            return None
    return "`apt-get install -y chromium` did not install /usr/bin/chromium"


# Module-scoped, not session-scoped: Playwright's sync API keeps an event loop running in this thread
# while it is open, and later tests that call asyncio.run() must not find one.
@pytest.fixture(scope="module")
def browser():
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright  # the browser driver only where a browser runs

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def sim(monkeypatch):
    with recording_simulator(monkeypatch, KEY) as simulator:
        yield simulator


@pytest.fixture
def console(sim, tmp_path):
    """``halo-reconciler serve`` as its own process on a free loopback port; its base URL."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "HALO_RECONCILER_LOG_FORMAT": "json"}
    proc = start_in_new_group([sys.executable, "-m", "worker.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, timeout=60,
                   ignoring=(httpx.HTTPError,), what="serve answering /healthz", log=log)
        yield url
    finally:
        stop_process_groups([proc], timeout=20)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
