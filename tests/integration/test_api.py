"""``halo-reconciler serve`` as a real process against real Valkey, PostgreSQL and the simulator.

A sequence of reports over HTTP counts exactly what the same sequence through the Python hook
counts (the ``halo:reports`` outcome hash and the messages published), and the README's Node.js
example runs against it when ``node`` is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import httpx
import pytest
import redis

from models import PmsType
from reconciler.adapters.coordination import keys
from tests.utils.workers import ROOT
from tests.utils.serving import running_serve
from worker import admin, hooks

pytestmark = pytest.mark.integration

TOKEN = "api-integration-token-5e1f0b"
UNKNOWN = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
def practice(stack):
    """A Zedmed practice whose GUID changed once: (id, current GUID, the GUID it left)."""
    sim, _ = stack
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z-API", practice_name="API Clinic")
    onboarded = admin.onboard("Zedmed", "Z-API")
    new = sim.change_guid(PmsType.ZEDMED, "Z-API")
    result = admin.reconcile_now(onboarded.id)
    assert (result.verdict, result.new_guid) == ("infrastructure_change", new)
    return onboarded.id, new, onboarded.halo_guid


@pytest.fixture
def server(stack, tmp_path):
    """``halo-reconciler serve`` on a free loopback port, stopped (and checked) at the end."""
    _, env = stack
    log = tmp_path / "serve.log"
    with running_serve(env, log, f"other-token-1234,{TOKEN}") as (url, _):
        yield url, log


@pytest.fixture
def r(stack):
    _, env = stack
    client = redis.Redis.from_url(env["BROKER_URL"])
    yield client
    client.close()


def fresh_start(r: redis.Redis, practice) -> None:
    """Forget every report and queued message; the GUID index as onboarding and the switch left it."""
    practice_id, current, left = practice
    r.flushall()
    admin.index_guids(practice_id, current, [left])


def queued(r: redis.Redis) -> dict[str, int]:
    """Messages waiting in the Celery queues (Redis lists named after them)."""
    return {key.decode(): r.llen(key) for key in r.scan_iter() if r.type(key) == b"list"}


def outcomes(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(keys.report_outcomes()).items()}


def sequence(practice) -> list[tuple[str, str | None]]:
    _, current, left = practice
    return [
        (current, "Forbidden"),             # publish
        (current.upper(), None),            # folded into the pending run
        (current, "Forbidden"),             # folded
        (left, "Forbidden"),                # stale: no Halo call
        ("{" + left + "}", None),           # stale
        (UNKNOWN, None),                    # lookup
        (UNKNOWN, "Forbidden"),             # folded while the lookup is on its way
        ("not-a-guid", None),               # rejected
        (current, "Caller Ip Not Allowed"),  # integrator-wide
        (current, "Caller Ip Not Allowed"),  # folded, counted integrator-wide
    ]


def test_reports_over_http_count_exactly_what_the_hook_counts(stack, practice, server, r):
    url, log = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    fresh_start(r, practice)
    statuses = []
    for guid, message in sequence(practice):
        response = httpx.post(f"{url}/v1/reports", json={"guid": guid, "message": message}, headers=auth, timeout=5)
        statuses.append(response.status_code)
    over_http, http_queued = outcomes(r), queued(r)

    fresh_start(r, practice)
    hooks.reset()
    taken = [hooks.report_forbidden(guid, message, source="python") for guid, message in sequence(practice)]
    through_hook, hook_queued = outcomes(r), queued(r)

    assert statuses == [202 if ok else 400 for ok in taken] and statuses.count(400) == 1
    assert over_http == through_hook
    assert (over_http["publish"], over_http["stale"], over_http["lookup"], over_http["rejected"]) == (1, 2, 1, 1)
    assert over_http["folded"] == 3 and over_http["integrator_wide"] == 2
    assert http_queued == hook_queued and sum(http_queued.values()) == 3  # reconcile, lookup, integrator-wide

    handled = [json.loads(line) for line in log.read_text().splitlines() if "api_request_handled" in line]
    assert {(e["method"], e["path"]) for e in handled} >= {("POST", "/v1/reports"), ("GET", "/readyz")}


def test_the_current_guid_over_http(stack, practice, server):
    url, _ = server
    practice_id, current, left = practice
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.get(f"{url}/v1/guids/{left}", headers=auth, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"guid": left, "current_guid": current, "practice_id": practice_id, "state": "active"}
    assert httpx.get(f"{url}/v1/guids/{UNKNOWN}", headers=auth, timeout=5).status_code == 404
    assert httpx.get(f"{url}/v1/guids/{left}", timeout=5).status_code == 401
    big = {"guid": current, "message": "x" * 70_000}
    assert httpx.post(f"{url}/v1/reports", json=big, headers=auth, timeout=5).status_code == 413


def _readme_block(language: str, marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S):
        if marker in block:
            return block
    raise AssertionError(f"no {language} block with {marker!r} in the README")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_the_readmes_node_example_reports_and_asks(stack, practice, server, r, tmp_path):
    url, _ = server
    _, current, left = practice
    fresh_start(r, practice)
    script = tmp_path / "halo-reconciler.mjs"
    script.write_text(_readme_block("js", "reportForbidden"))
    env = {**os.environ, "RECONCILER_URL": url, "RECONCILER_TOKEN": TOKEN}

    done = subprocess.run(["node", str(script), left], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"taken": True, "current_guid": current}
    assert outcomes(r) == {"stale": 1}

    done = subprocess.run(["node", str(script), UNKNOWN], env=env, capture_output=True, text=True, timeout=30)
    assert json.loads(done.stdout) == {"taken": True, "current_guid": None}

    refused = subprocess.run(["node", str(script), left], env={**env, "RECONCILER_TOKEN": "wrong"},
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "401" in refused.stderr  # taken: false, then currentGuid throws


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not on PATH")
def test_the_readmes_curl_example(stack, practice, server, r):
    url, _ = server
    _, current, left = practice
    fresh_start(r, practice)
    example = _readme_block("sh", "/v1/reports").replace("3f2504e0-4f89-41d3-9a0c-0305e82c3301", left)
    example = example.replace("RECONCILER_URL=http://127.0.0.1:8000", f"RECONCILER_URL={url}")
    example = example.replace("RECONCILER_TOKEN=...", f"RECONCILER_TOKEN={TOKEN}")
    done = subprocess.run(["bash", "-euc", example], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    decoder, text, documents = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    first, second = documents
    assert first == {"taken": True} and second["current_guid"] == current
    assert outcomes(r) == {"stale": 1}
