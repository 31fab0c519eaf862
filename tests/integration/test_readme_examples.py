"""The README's examples for application developers, run as written against a real ``serve``, a real
worker (delivering the webhook), Valkey, PostgreSQL and the simulator: the transport (Python), the
report that waits (curl), and docs/WEBHOOKS.md's receiver keeping an application's table of GUIDs right.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import httpx
import pytest

from models import PmsType
from tests.integration.conftest import KEY
from tests.utils.servers import free_port
from tests.utils.serving import running_serve
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT, start_workers, stop_workers
from worker import admin
from worker.processes import start_in_new_group, stop_process_group

pytestmark = pytest.mark.integration

TOKEN = "readme-examples-token-61f0"
SECRET = "readme-examples-webhook-secret-9b2c"


def block(document: str, language: str, marker: str) -> str:
    text = (ROOT / document).read_text()
    for found in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S):
        if marker in found:
            return found
    raise AssertionError(f"no {language} block with {marker!r} in {document}")


@pytest.fixture
def live(stack, tmp_path):
    """The stack with the webhook pointed at the receiver from docs/WEBHOOKS.md, a worker, ``serve``,
    and the application's own table of GUIDs."""
    sim, env = stack
    port = free_port()
    env = {**env, "HALO_RECONCILER_WEBHOOK_URL": f"http://127.0.0.1:{port}/events",
           "HALO_RECONCILER_WEBHOOK_SECRET": SECRET}
    receiver_py = tmp_path / "guid_receiver.py"
    receiver_py.write_text(block("docs/WEBHOOKS.md", "python", "practice.guid_changed"))
    app_db = tmp_path / "app.sqlite"
    receiver = start_in_new_group([sys.executable, str(receiver_py), str(port), str(app_db)],
                                  env={**os.environ, "HALO_RECONCILER_WEBHOOK_SECRET": SECRET},
                                  stdout=open(tmp_path / "receiver.log", "wb"), stderr=subprocess.STDOUT)
    wait_until(lambda: httpx.post(f"http://127.0.0.1:{port}/events", content=b"{}").status_code == 401,
               timeout=20, interval=0.1, what="the receiver answering", ignoring=(httpx.HTTPError,))
    workers = start_workers(env, tmp_path, count=1, concurrency=2, ready=True)
    try:
        with running_serve(env, tmp_path / "serve.log", TOKEN) as (url, _):
            yield sim, env, url, app_db
    finally:
        stop_workers(workers)
        stop_process_group(receiver, timeout=10)


def moved(sim, app_db, pms_id: str) -> tuple[str, str]:
    """Onboarded, stored in the application's table, then moved at Halo: (old, new)."""
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
    old = admin.onboard("Zedmed", pms_id).halo_guid
    with sqlite3.connect(app_db) as db:
        db.execute("INSERT INTO practices VALUES (?, ?, ?)", ("Zedmed", pms_id, old))
    return old, sim.change_guid(PmsType.ZEDMED, pms_id)


def stored(app_db, pms_id: str) -> str:
    with sqlite3.connect(app_db) as db:
        return db.execute("SELECT guid FROM practices WHERE pms_id = ?", (pms_id,)).fetchone()[0]


def test_the_application_developers_examples(live, tmp_path):
    sim, env, url, app_db = live
    example_env = {**os.environ, "HALO_BASE_URL": env["HALO_BASE_URL"], "HALO_SUBSCRIPTION_KEY": KEY,
                   "RECONCILER_URL": url, "RECONCILER_TOKEN": TOKEN}

    # Python: the transport. The query naming the replaced GUID gets the new site's answer.
    old, new = moved(sim, app_db, "Z-README-1")
    script = tmp_path / "halo_query.py"
    script.write_text(block("README.md", "python", "HaloTransport(reconciler"))
    done = subprocess.run([sys.executable, str(script), old], env=example_env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": 200, "site": new}

    # Any language: the report that waits, with curl.
    if shutil.which("curl") is not None:
        old2, new2 = moved(sim, app_db, "Z-README-2")
        shell = block("README.md", "sh", "wait_seconds")
        done = subprocess.run(["sh", "-c", shell], env={**example_env, "GUID": old2}, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"taken": True, "settled": True, "current_guid": new2, "action": "switched"}
        wait_until(lambda: stored(app_db, "Z-README-2") == new2, timeout=60, what="the receiver storing the new GUID")

    # Events: the receiver updated the application's table from practice.guid_changed alone.
    wait_until(lambda: stored(app_db, "Z-README-1") == new, timeout=60, what="the receiver storing the new GUID")
    assert "README" not in (tmp_path / "receiver.log").read_text()  # no hold was announced
