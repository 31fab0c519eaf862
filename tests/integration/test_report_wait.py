"""``POST /v1/reports`` with ``wait_seconds``, against a real ``serve``, a real worker, Valkey and PostgreSQL.

Each case of PRODUCT.md's "A report that waits": a report that leads to a switch, one naming a GUID
already replaced, one whose re-check comes later than its wait, an unknown GUID, and bad values. And
the promise behind it, measured on the processes themselves: 200 waiting requests hold no database
connection, no thread each, one Redis subscription between them, and no worker process (a report for
another practice settles while they wait).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from models import PmsType
from reconciler.adapters.coordination import keys
from tests.integration.conftest import use_environment
from tests.utils.serving import running_serve, tcp_connections, threads
from tests.utils.workers import start_workers, stop_workers
from worker import admin

pytestmark = pytest.mark.integration

TOKEN = "wait-test-token-7c41d2"
UNKNOWN = "99999999-9999-4999-8999-999999999999"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
WAITERS = 200
PRACTICES = 20


@pytest.fixture
def live(stack, tmp_path, monkeypatch):
    """``(simulator, serve's URL, serve's process, env)`` with one worker running. The re-check delay is
    a minute, so a report right after a confirmation cannot settle within any wait."""
    sim, env = stack
    env = {**env, "HALO_RECONCILER_RECHECK_MIN_SECONDS": "60", "HALO_RECONCILER_RECHECK_MAX_SECONDS": "120"}
    use_environment(monkeypatch, env)
    workers = start_workers(env, tmp_path, count=1, concurrency=2, ready=True)
    try:
        with running_serve(env, tmp_path / "serve.log", TOKEN) as (url, proc):
            yield sim, url, proc, env
    finally:
        stop_workers(workers)


def onboard(sim, pms_id: str) -> tuple[int, str]:
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
    out = admin.onboard("Zedmed", pms_id)
    return out.id, out.halo_guid


def post(url: str, body: dict, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v1/reports", json=body, headers=HEADERS, timeout=timeout)


def test_a_changed_guid_answers_with_the_switch_and_the_replaced_one_at_once(live):
    sim, url, _, _ = live
    practice_id, old = onboard(sim, "Z-WAIT-1")
    new = sim.change_guid(PmsType.ZEDMED, "Z-WAIT-1")

    first = post(url, {"guid": old, "message": "Forbidden", "wait_seconds": 10})
    assert first.status_code == 200, first.text
    assert first.json() == {"taken": True, "settled": True, "current_guid": new, "action": "switched"}

    again = post(url, {"guid": old, "wait_seconds": 10})  # the GUID was replaced: no run, the answer at once
    assert again.json() == {"taken": True, "settled": True, "current_guid": new, "action": None}
    assert admin.practice(practice_id).halo_guid == new


def test_a_recheck_later_than_the_wait_is_not_settled(live):
    sim, url, _, _ = live
    practice_id, guid = onboard(sim, "Z-WAIT-2")
    assert admin.reconcile_now(practice_id).action == "marked_verified"  # Halo confirmed it a moment ago

    answer = post(url, {"guid": guid, "wait_seconds": 1})
    assert answer.status_code == 200
    assert answer.json() == {"taken": True, "settled": False, "current_guid": guid, "action": None}


def test_a_report_folds_into_the_run_the_first_one_queued(live):
    sim, url, _, _ = live
    _, old = onboard(sim, "Z-WAIT-3")
    new = sim.change_guid(PmsType.ZEDMED, "Z-WAIT-3")

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=HEADERS, timeout=30) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/reports", json={"guid": old, "wait_seconds": 10})
                                          for _ in range(5)))

    answers = [r.json() for r in asyncio.run(both())]
    assert all(a["settled"] and a["current_guid"] == new for a in answers), answers
    # One run answered all five: onboarding's Find sites and the run's, no more.
    assert sim.calls[("find_sites", "Z-WAIT-3")] == 2, sim.calls


def test_unknown_and_bad_values(live):
    _, url, _, _ = live
    assert post(url, {"guid": UNKNOWN, "wait_seconds": 2}).json() == {
        "taken": True, "settled": True, "current_guid": None, "action": None}
    for bad in (0, -1, 10.5, 11, "2", True, [], {}):
        answer = post(url, {"guid": UNKNOWN, "wait_seconds": bad})
        assert answer.status_code == 400 and "wait_seconds" in answer.json()["error"], bad
    assert post(url, {"guid": UNKNOWN}).status_code == 202
    assert post(url, {"guid": UNKNOWN, "wait_seconds": None}).status_code == 202


def test_reports_folding_into_an_unknown_guids_lookup_answer_at_once(live):
    """A GUID the index does not know, while its lookup is under way (the mark a slow worker's lookup
    leaves): each waiting report rides along, and answers from the database at once what the lookup
    will find (no practice), not ``settled: false`` at the end of its wait."""
    _, url, _, env = live
    guid = "99999999-9999-4999-8999-999999999998"
    r = redis.Redis.from_url(env["BROKER_URL"])
    r.set(keys.lookup(guid), "1", ex=60)  # a lookup is on its way
    folded_before = int(r.hget(keys.report_outcomes(), "folded") or 0)

    async def waiting() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=HEADERS, timeout=30) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/reports", json={"guid": guid, "wait_seconds": 10})
                                          for _ in range(5)))

    answers = [a.json() for a in asyncio.run(waiting())]
    assert answers == [{"taken": True, "settled": True, "current_guid": None, "action": None}] * 5
    assert int(r.hget(keys.report_outcomes(), "folded")) - folded_before == 5  # each rode the lookup
    assert r.exists(keys.lookup(guid))  # no second lookup was sent: the mark is the one set above


def test_a_report_folding_into_a_lookup_of_a_known_guid_waits_for_the_run_the_lookup_leads_to(live):
    """The index lost a practice's GUID (a Valkey that restarted without its data): the first report sends
    the lookup, a waiting one meanwhile rides it, and settles with the run the lookup publishes."""
    sim, url, _, env = live
    _, old = onboard(sim, "Z-WAIT-4")
    new = sim.change_guid(PmsType.ZEDMED, "Z-WAIT-4")
    r = redis.Redis.from_url(env["BROKER_URL"])
    r.hdel(keys.guid_index(), old)
    r.set(keys.lookup(old), "1", ex=60)  # the lookup a first report sent, still on its way ...
    from worker import hooks

    folded_before = int(r.hget(keys.report_outcomes(), "folded") or 0)

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(headers=HEADERS, timeout=30) as client:
            waiting = asyncio.ensure_future(client.post(f"{url}/v1/reports", json={"guid": old, "wait_seconds": 10}))
            while int(r.hget(keys.report_outcomes(), "folded") or 0) == folded_before:  # taken: it rode the lookup
                assert not waiting.done(), waiting.result().text
                await asyncio.sleep(0.02)
            r.delete(keys.lookup(old))
            assert hooks.report(old) == "lookup"  # ... now sent for real: the worker looks it up, runs the practice
            return await waiting

    answer = asyncio.run(scenario()).json()
    # The run's own answer, or (when the run switched before the report's one read of the database)
    # the replaced GUID's, with no action: settled either way, with the GUID to use now.
    assert answer in ({"taken": True, "settled": True, "current_guid": new, "action": "switched"},
                      {"taken": True, "settled": True, "current_guid": new, "action": None})


def test_200_waiting_reports_hold_no_database_connection_thread_or_worker(live):
    sim, url, proc, env = live
    postgres_port = urlsplit(env["DATABASE_URL"]).port
    redis_port = urlsplit(env["BROKER_URL"]).port
    guids = []
    for n in range(PRACTICES):
        practice_id, guid = onboard(sim, f"Z-MANY-{n}")
        assert admin.reconcile_now(practice_id).action == "marked_verified"
        guids.append(guid)
    _, moving = onboard(sim, "Z-MOVING")
    moved = sim.change_guid(PmsType.ZEDMED, "Z-MOVING")
    # Warm up: the subscription, the thread pool and the database pool exist before the baseline.
    assert post(url, {"guid": guids[0], "wait_seconds": 0.1}).status_code == 200
    baseline = {"db": tcp_connections(proc.pid, postgres_port), "redis": tcp_connections(proc.pid, redis_port),
                "threads": threads(proc.pid)}

    async def scenario() -> tuple[list[httpx.Response], dict[str, int], httpx.Response]:
        limits = httpx.Limits(max_connections=WAITERS + 10, max_keepalive_connections=WAITERS + 10)
        async with httpx.AsyncClient(headers=HEADERS, timeout=60, limits=limits) as client:
            waiting = [asyncio.create_task(client.post(f"{url}/v1/reports",
                                                       json={"guid": guids[i % PRACTICES], "wait_seconds": 6}))
                       for i in range(WAITERS)]
            await asyncio.sleep(2)  # let every request arrive and settle into its wait
            assert not any(task.done() for task in waiting), [t.result().text for t in waiting if t.done()][:3]
            during = {"db": tcp_connections(proc.pid, postgres_port), "redis": tcp_connections(proc.pid, redis_port),
                      "threads": threads(proc.pid),
                      "subscriptions": redis.Redis.from_url(env["BROKER_URL"]).pubsub_numsub(keys.runs_finished())[0][1]}
            # The worker is free: a report for a practice whose GUID moved settles meanwhile.
            switched = await client.post(f"{url}/v1/reports", json={"guid": moving, "wait_seconds": 10})
            assert not all(task.done() for task in waiting)
            return list(await asyncio.gather(*waiting)), during, switched

    answers, during, switched = asyncio.run(scenario())
    print(f"serve while {WAITERS} reports waited: {during} (before: {baseline})")
    assert switched.json() == {"taken": True, "settled": True, "current_guid": moved, "action": "switched"}
    assert [a.status_code for a in answers] == [200] * WAITERS
    assert all(a.json()["settled"] is False for a in answers)
    # No database connection beyond the pool the warm-up opened, no thread per request (the threads that
    # took the 200 reports are anyio's pool, 40 at most, idle again), and one subscription for them all
    # (the Redis connections beyond it are the report path's pool, as many as the threads that used it).
    assert during["db"] <= baseline["db"], (baseline, during)
    assert during["threads"] <= baseline["threads"] + 41, (baseline, during)
    assert during["subscriptions"] == 1, (baseline, during)
    assert during["redis"] <= baseline["redis"] + 2 * 41, (baseline, during)
