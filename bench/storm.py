"""Storm: 50,000 403 reports over 1,000 practices (80% GUID moves, 10% new owners, 10% unchanged),
Redis broker, 2 worker processes, the simulator answering in 80 ms. The coalescing worker against a
naive one (one task and one Find sites call per report) and against the ideal (one call per
practice from a bare thread pool of the same concurrency), in one run; and the same storm sent over
HTTP (``POST /v1/reports`` to a real ``halo-reconciler serve``), which must spend the same Find
sites calls as the Python hook.

``python3 dev.py bench storm`` (add ``--quick`` for a tenth of the size).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from bench.fleet import index_all, seed_database
from bench.stack import KEY, MemorySampler, Stack, tree_cpu_seconds
from bench.targets import record

LATENCY = 0.08
WORKERS, CONCURRENCY = 2, 8
# The benchmark measures switching at full speed: the global rate limit and the mass-change guard
# (which would, rightly, hold most of a storm in which 80% of the fleet moves) are lifted.
BENCH_SETTINGS = {"HALO_RECONCILER_RATE_LIMIT_PER_SECOND": "10000", "HALO_RECONCILER_MASS_CHANGE_MIN": "1000000"}


def prepare(stack: Stack, database: str, practices: list[tuple[str, str]]) -> list[int]:
    import redis

    from worker import db

    stack.postgres.create_database(database)
    env = stack.env(database, **BENCH_SETTINGS)
    stack.use(env)
    db.upgrade_schema()
    ids = seed_database(practices)
    client = redis.Redis.from_url(stack.redis.url)
    client.flushall()
    index_all(client, ids, practices)
    client.close()
    return ids


def ideal(stack: Stack, practices: list[tuple[str, str]]) -> float:
    from models import PmsType
    from reconciler.adapters.halo_client import HaloClient

    clients = [HaloClient(base_url=stack.sim_url, subscription_key=KEY) for _ in range(WORKERS * CONCURRENCY)]
    began = time.monotonic()
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(lambda item: clients[item[0] % len(clients)].find_sites(PmsType.BEST_PRACTICE, item[1][0]),
                      enumerate(practices)))
    wall = time.monotonic() - began
    for c in clients:
        c.close()
    return wall


def _http_sender(stack: Stack, env: dict[str, str]):
    """A ``send(guid)`` that reports over HTTP to a fresh ``serve``: one keep-alive client per thread."""
    import httpx

    from bench.hook import TOKEN, _serve

    _, url = _serve(stack, env)
    local = threading.local()

    def send(guid: str) -> bool:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        response = local.client.post("/v1/reports", json={"guid": guid, "message": "Forbidden"})
        return response.status_code == 202

    return send


def run_storm(stack: Stack, control, practices, ids, reports: list[str], *, naive: bool, http: bool = False) -> dict:
    from sqlmodel import func, select

    from models import Practice, Reconciliation
    from worker import db

    name = "naive" if naive else "http" if http else "coalesced"
    env = stack.env(f"bench_{name}", **BENCH_SETTINGS)
    stack.use(env)
    workers = stack.start_workers(env, app="bench.naive" if naive else "worker", count=WORKERS,
                                  concurrency=CONCURRENCY, queues="naive" if naive else "events,reconcile,sweep,deliver")
    sampler = MemorySampler(workers)
    groups = {"workers": [w.pid for w in workers], "redis": [stack.redis.proc.pid],
              "postgres": [stack.postgres.proc.pid], "simulator": [stack.sim.pid]}

    def cpu() -> dict[str, float]:
        used = {name: sum(tree_cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        used["sender"] = time.process_time()  # this process: the 8 sending threads (and a settling watcher)
        return used

    cpu_before = cpu()
    control.reset_counters()
    first_report: dict[str, float] = {}
    if http:
        send = _http_sender(stack, env)  # serve started (and healthy) before the clock starts
    began_wall, began = time.time(), time.monotonic()
    if naive:
        from bench.naive import app as naive_app

        def send(guid: str) -> bool:
            naive_app.send_task("bench.naive_reconcile", args=[guid], queue="naive")
            return True
    elif not http:
        from worker.hooks import report_forbidden as send
    since = datetime.fromtimestamp(began_wall, UTC)

    def settled() -> bool:
        with db.new_session() as session:
            if naive:
                done = session.exec(select(func.count()).select_from(Reconciliation)).one()
                return done >= len(reports)
            verified = session.exec(select(func.count()).select_from(Practice).where(
                Practice.last_verified_at >= since)).one()
            return verified >= len(ids)

    # Settling is watched while the reports are still being sent: the fleet is settled when every
    # practice has its verdict, however many of the storm's later reports are still on their way
    # (they are folded or counted and change nothing). The sending time is reported on its own.
    settled_at: list[float] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            if settled():
                settled_at.append(time.monotonic())
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for guid in reports[: len(practices)]:
        first_report.setdefault(guid, time.time())
    with ThreadPoolExecutor(8) as pool:
        taken = sum(pool.map(send, reports, chunksize=200))
    sent = time.monotonic() - began

    # Generous (6x the naive physical limit): a baseline that times out on a busy machine measures nothing.
    timeout = 60 + len(reports) * LATENCY / (WORKERS * CONCURRENCY) * 6
    watcher.join(timeout)
    watching.set()
    if settled_at:
        wall = settled_at[0] - began
    else:
        with db.new_session() as session:
            verified = session.exec(select(func.count()).select_from(Practice).where(
                Practice.last_verified_at >= since)).one()
            runs = session.exec(select(func.count()).select_from(Reconciliation)).one()
            behind = session.exec(select(Practice).where(Practice.last_verified_at < since)).all()
            import redis as redis_lib

            from reconciler.adapters.coordination import keys as k

            r = redis_lib.Redis.from_url(stack.redis.url)
            for p in behind:
                audits = session.exec(select(Reconciliation).where(Reconciliation.practice_id == p.id)).all()
                print("behind:", p.id, p.pms_id, p.halo_guid, p.state, p.last_verified_at,
                      [(a.trigger, a.verdict, a.action, a.started_at) for a in audits],
                      {name: r.get(name) for name in (k.dirty(p.id), k.processing(p.id), k.fresh(p.id))},
                      r.hget(k.guid_index(), p.halo_guid), file=sys.stderr)
        raise TimeoutError(f"{name} run not settled after {timeout:.0f} s: "
                           f"{verified} of {len(ids)} practices verified, {runs} reconciliations, "
                           f"{control.call_count('find_sites')} Find sites calls; logs in {stack.tmp}") from None
    cpu_used = {name: seconds - cpu_before[name] for name, seconds in cpu().items()}
    time.sleep(1.0)
    peaks = sampler.stop()
    # Stopped first, warm (SIGTERM to each worker's main process only: it stops consuming and lets
    # its pool finish the runs in flight; the group's SIGTERM would kill a run after its Halo call and
    # before its audit row), so the calls and the audit agree. Re-checks waiting for their countdown
    # are not run.
    for worker in workers:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=60)
    stack.stop(workers)  # whatever is left of the groups
    finds = control.call_count("find_sites")
    statuses = control.call_count("get_site")  # verify before switching: one per switched practice
    with db.new_session() as session:
        # Runs beyond a practice's first are re-checks: reports kept naming a GUID Halo had confirmed or
        # held (each after the re-check delay, doubling). A switched practice must have none: its
        # reports name the GUID it left.
        runs_of = dict(session.exec(select(Reconciliation.practice_id, func.count())
                                    .group_by(Reconciliation.practice_id)).all())
        switched_ids = set(session.exec(select(Reconciliation.practice_id)
                                        .where(Reconciliation.action == "switched")).all())
        rechecks = sum(n - 1 for n in runs_of.values())
        rechecks_of_switched = sum(runs_of[pid] - 1 for pid in switched_ids)
        first_done = dict(session.exec(select(Reconciliation.practice_id, func.min(Reconciliation.finished_at))
                                       .group_by(Reconciliation.practice_id)).all())
        by_guid = {g: pid for pid, (_, g) in zip(ids, practices)}
        latencies = sorted((first_done[by_guid[g]].timestamp() - t) for g, t in first_report.items()
                           if by_guid.get(g) in first_done)
        states = dict(session.exec(select(Practice.state, func.count()).group_by(Practice.state)).all())
        switched = session.exec(select(func.count()).select_from(Reconciliation).where(
            Reconciliation.action == "switched")).one()
    return {"reports": len(reports), "taken": taken, "send_s": sent, "finds": finds, "statuses": statuses, "wall": wall,
            "asked": len(runs_of), "rechecks": rechecks, "rechecks_of_switched": rechecks_of_switched,
            "p50": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))],
            "peak_mb": max(peaks), "states": states, "switched": switched, "cpu": cpu_used}



def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[2:] if argv is None else argv
    quick = "--quick" in argv
    n_practices, per_practice = (100, 50) if quick else (1000, 50)
    from worker.simulator.control import SimulatorControl

    stack = Stack()
    try:
        control = SimulatorControl(stack.sim_url, key=KEY)
        practices = control.seed(n_practices)
        for i, (pms_id, _) in enumerate(practices):
            if i % 10 < 8:
                control.change_guid("BestPractice", pms_id)
            elif i % 10 == 8:
                control.rename(control.change_guid("BestPractice", pms_id), f"New Owners {pms_id}")
        ids = prepare(stack, "bench_coalesced", practices)
        prepare(stack, "bench_naive", practices)
        control.set_latency(LATENCY)
        reports = [guid for _ in range(per_practice) for _, guid in practices]  # round-robin over the fleet

        ideal_wall = ideal(stack, practices)
        coalesced = run_storm(stack, control, practices, ids, reports, naive=False)
        # The HTTP run starts from the state the hook's run started from: its own database, and Redis
        # flushed and indexed again (the hook's run left the old GUIDs marked as replaced).
        prepare(stack, "bench_http", practices)
        over_http = run_storm(stack, control, practices, ids, reports, naive=False, http=True)
        # Said at once: the naive baseline that follows is the long run a busy machine may time out.
        print(f"hook and HTTP runs: Find sites calls {coalesced['finds']} and {over_http['finds']}, "
              f"wall {coalesced['wall']:.2f} s and {over_http['wall']:.2f} s", file=sys.stderr, flush=True)
        naive = run_storm(stack, control, practices, ids, reports, naive=True)

        concurrency = WORKERS * CONCURRENCY
        print(f"storm: {len(reports)} reports over {n_practices} practices (80% GUID moves, 10% new owners, "
              f"10% unchanged); simulator latency {LATENCY * 1000:.0f} ms; {WORKERS} workers x {CONCURRENCY} "
              f"processes; Redis broker; PostgreSQL")
        print(f"{'run':<12} {'Find sites':>10} {'wall s':>8} {'reports sent s':>15} {'report->verdict p50 s':>22} "
              f"{'p95 s':>7} {'peak worker MB':>15}")
        print(f"{'ideal':<12} {n_practices:>10} {ideal_wall:>8.2f} {'-':>15} {'-':>22} {'-':>7} {'-':>15}")
        for name, r in (("coalesced", coalesced), ("http", over_http), ("naive", naive)):
            print(f"{name:<12} {r['finds']:>10} {r['wall']:>8.2f} {r['send_s']:>15.2f} {r['p50']:>22.2f} "
                  f"{r['p95']:>7.2f} {r['peak_mb']:>15.0f}")
        print("wall: from the first report until every practice has its verdict (the naive worker: until "
              "every report has had its own run); reports sent: how long the 8 sending threads took")
        print(f"physical limit: {n_practices} x {LATENCY:.2f} s / {concurrency} = {n_practices * LATENCY / concurrency:.2f} s")
        print(f"coalesced / ideal wall: {coalesced['wall'] / ideal_wall:.2f}x (target <= 1.5x); "
              f"naive / coalesced wall: {naive['wall'] / coalesced['wall']:.1f}x (target >= 20x); "
              f"Find sites calls {coalesced['finds']} for {n_practices} affected practices: "
              f"{coalesced['finds'] - coalesced['rechecks']} first looks (target: equal) and {coalesced['rechecks']} "
              f"re-checks of practices whose GUID stayed in use ({coalesced['rechecks_of_switched']} of switched ones)")
        print(f"Get site status calls {coalesced['statuses']} for {coalesced['switched']} switched practices "
              f"(target: equal); naive: {naive['statuses']}")
        print(f"the same storm over HTTP (POST /v1/reports to serve): Find sites calls {over_http['finds']} "
              f"(first looks {over_http['finds'] - over_http['rechecks']}, re-checks {over_http['rechecks']}, of switched practices {over_http['rechecks_of_switched']}; hook: {coalesced['finds']}); {over_http['taken']} of {over_http['reports']} taken, "
              f"sent in {over_http['send_s']:.1f} s")
        for name, r in (("coalesced", coalesced), ("naive", naive)):
            used = r["cpu"]
            print(f"CPU seconds until settled, {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in used.items())
                  + f"; total {sum(used.values()):.1f} of {os.cpu_count() * r['wall']:.1f} available on {os.cpu_count()} cores "
                  f"in {r['wall']:.1f} s")
        size = f"{n_practices:,} practices"
        for label, r in (("hook", coalesced), ("HTTP", over_http)):
            first_looks = r["finds"] - r["rechecks"]
            record("storm", f"Find sites calls: one per affected practice, then only scheduled re-checks ({label}, {size})",
                   figure=f"{r['finds']:,}: {first_looks:,} first looks + {r['rechecks']:,} re-checks "
                          f"({r['rechecks_of_switched']} of switched practices)",
                   baseline=f"{n_practices:,} affected; naive {naive['finds']:,}",
                   ratio=f"{first_looks / n_practices:.2f}x first looks",
                   met=first_looks == n_practices == r["asked"] and r["rechecks_of_switched"] == 0)
        record("storm", "Get site status calls equal to the switched practices", figure=f"{coalesced['statuses']:,}",
               baseline=f"{coalesced['switched']:,} switched",
               ratio=f"{coalesced['statuses'] / max(coalesced['switched'], 1):.2f}x",
               met=coalesced["statuses"] == coalesced["switched"])
        record("storm", f"wall within 1.5x the ideal ({size})", figure=f"{coalesced['wall']:.2f} s",
               baseline=f"ideal {ideal_wall:.2f} s", ratio=f"{coalesced['wall'] / ideal_wall:.2f}x (<= 1.5x)",
               met=coalesced["wall"] <= 1.5 * ideal_wall)
        record("storm", "wall at most a twentieth of the naive worker's", figure=f"{coalesced['wall']:.2f} s",
               baseline=f"naive {naive['wall']:.1f} s", ratio=f"{naive['wall'] / coalesced['wall']:.1f}x (>= 20x)",
               met=naive["wall"] >= 20 * coalesced["wall"])
        print(f"end states after the coalesced storm: {coalesced['states']}, switched {coalesced['switched']}; "
              f"reports sent in {coalesced['send_s']:.1f} s, {coalesced['taken']} taken")
    finally:
        stack.close()


if __name__ == "__main__":
    main(sys.argv[1:])
