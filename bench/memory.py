"""Memory of a real worker: ``halo-reconciler worker --concurrency 8`` (prefork) on a throw-away Valkey
(broker and coordination) and an SQLite file, reconciling practices against the simulator on
loopback, until every child has run reconciliations. Then, per process, from /proc:

- ``peak RSS``: VmHWM, the most the process ever had resident;
- ``RSS`` now, ``PSS`` (pages shared with the parent and siblings count a share each: the honest
  per-child cost under fork) and ``USS`` (private pages only: what the child alone adds).

The configurations: the bare pool (the engine's floor: a Celery prefork worker of the same versions
on the same Redis broker, ``--concurrency 8``, one no-op task, nothing of ours imported, warmed with as
many tasks in as many rounds); the default; the metrics port on; an identifier query set; and both. The worker
children import what a reconciliation needs before the fork, in the parent (``worker.process``), so
their shared pages stay shared; ``gc.freeze()`` before the fork keeps the garbage collector from
writing to every inherited object (each write copies a page).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.targets import BASELINE_REF, record

PRACTICES = 48
ROUNDS = 2
CONCURRENCY = 8
KEY = "bench-memory-key-2b7d"
TARGET_MB = 60.0
QUERY = "SELECT PracticeName FROM Practice"


def _kib(path: Path, fields: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            found[name] = int(rest.split()[0])
    return found


def process_memory(pid: int) -> dict[str, float]:
    """MB: peak RSS (VmHWM), RSS, PSS and USS (private clean + private dirty) of one process."""
    status = _kib(Path(f"/proc/{pid}/status"), ("VmHWM", "VmRSS"))
    rollup = _kib(Path(f"/proc/{pid}/smaps_rollup"), ("Pss", "Private_Clean", "Private_Dirty"))
    return {"peak": status["VmHWM"] / 1024, "rss": status["VmRSS"] / 1024, "pss": rollup["Pss"] / 1024,
            "uss": (rollup["Private_Clean"] + rollup["Private_Dirty"]) / 1024}


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return sorted(found)


def _seed(sim, env: dict[str, str], prefix: str) -> list[int]:
    """``PRACTICES`` Zedmed practices, onboarded through the admin API (Find sites, pairing) in this process."""
    from models import PmsType
    from worker import admin, coordination, db, wiring
    from worker.celery_app import follow_settings
    from worker.config import get_settings
    from worker.logging import configure_logging

    os.environ.update(env)
    get_settings.cache_clear()
    configure_logging(get_settings())
    db.reset_engine()
    wiring.close_halo_client()
    coordination.reset_client()
    follow_settings()
    ids = []
    for n in range(PRACTICES):
        guid = sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=f"{prefix}{n:03d}", practice_name=f"Memory Clinic {n}")
        sim.set_query_rows(guid, [{"PracticeName": f"Memory Clinic {n}"}])
        ids.append(admin.onboard("Zedmed", f"{prefix}{n:03d}").id)
    return ids


def _reconciled(ids: list[int], rounds: int) -> bool:
    from worker import admin

    return all(sum(e.actor == "worker" for e in admin.audit(i)) >= rounds for i in ids)


NO_FREEZE = """
import sys
from celery.signals import worker_before_create_process
import worker.process
worker_before_create_process.disconnect(worker.process._freeze_before_fork)
from worker.cli import run
sys.argv = ["halo-reconciler", *sys.argv[1:]]
run()
"""


def _command(how: str, tree: Path | None) -> tuple[list[str], dict[str, str], Path | None]:
    """argv prefix (up to ``worker``), extra environment and working directory of one way to run it."""
    if how == "no-freeze":
        return [sys.executable, "-c", NO_FREEZE, "worker"], {}, None
    if how == "main" and tree is not None:
        # The same command from main's tree, ahead of this checkout on the path.
        return [sys.executable, "-m", "worker.cli", "worker"], {"PYTHONPATH": str(tree)}, tree
    return [str(Path(sys.executable).with_name("halo-reconciler")), "worker"], {}, None


def _main_tree(tmp: Path) -> Path | None:
    """main's code, checked out of git into ``tmp`` (the baseline row), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    tree = tmp / "main-tree"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", BASELINE_REF], capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


# The engine's floor: Celery's own worker command (as ``halo-reconciler worker`` starts it, without the
# umbrella CLI) over an app with one no-op task; the same settings that shape a pool's work (JSON,
# late acknowledgement, one message at a time). The task waits 50 ms, as a reconciliation waits on
# Halo, so that the broker spreads the tasks over all the children as it does the product's; it
# appends a byte to a file named by its process, so the bench knows every child ran tasks without
# importing anything into them.
BARE = """
import os, sys, time
from celery import Celery
from celery.bin.base import CLIContext
from celery.bin.worker import worker

app = Celery("bare", broker=sys.argv[1])
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, task_acks_late=True,
                worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)

@app.task(name="bare.noop", ignore_result=True)
def noop(directory):
    time.sleep(0.05)
    with open(os.path.join(directory, str(os.getpid())), "ab") as out:
        out.write(b".")

worker.main(args=sys.argv[2:], prog_name="bare worker", obj=CLIContext(app=app, no_color=True, workdir=None, quiet=False),
            standalone_mode=False)
"""


def run_bare(name: str, broker_url: str, tmp: Path, *, pool: str = "prefork", concurrency: int = CONCURRENCY) -> dict:
    """The bare pool, warmed as the product's worker is: ``PRACTICES`` tasks per round, ``ROUNDS`` rounds."""
    from celery import Celery

    from tests.utils.waiting import wait_until
    from tests.utils.workers import stop_workers
    from worker.processes import start_in_new_group

    marks = tmp / f"bare-marks-{pool}-{concurrency}"
    marks.mkdir()
    log = tmp / f"bare-{pool}-{concurrency}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HALO_", "CELERY_"))}
    proc = start_in_new_group([sys.executable, "-c", BARE, broker_url, "--concurrency", str(concurrency),
                               "--pool", pool, "--queues", "bare", "--loglevel", "INFO",
                               "--hostname", "memory-bare@%h", "--without-heartbeat", "--without-gossip",
                               "--without-mingle"],
                              env=env, cwd=tmp, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    sender = Celery("bare-sender", broker=broker_url)
    try:
        wait_until(lambda: b" ready." in log.read_bytes(), timeout=120, interval=0.2, what="the bare worker ready",
                   log=log)
        pool = children(proc.pid)
        fresh = {pid: process_memory(pid) for pid in [proc.pid, *pool]}
        for round_ in range(ROUNDS):
            for _ in range(PRACTICES):
                sender.send_task("bare.noop", args=[str(marks)], queue="bare")
            done = (round_ + 1) * PRACTICES
            wait_until(lambda: sum(p.stat().st_size for p in marks.iterdir()) >= done, timeout=300, interval=0.2,
                       what="the no-op tasks", log=log)
        time.sleep(1.0)  # the last acknowledgements
        warm = {pid: process_memory(pid) for pid in [proc.pid, *children(proc.pid)]}
    finally:
        sender.close()
        stop_workers([proc], timeout=30)
    workers = [pid for pid in warm if pid != proc.pid]
    ran = len(list(marks.iterdir()))
    return {"name": name, "main": warm[proc.pid], "fresh": [fresh[p] for p in pool if p in fresh],
            "children": [warm[p] for p in workers], "replaced": len(set(workers) - set(pool)), "ran": ran}


def run_config(name: str, extra: dict[str, str], stack_env: dict[str, str], tmp: Path, sim, how: str = "",
               tree: Path | None = None, *, pool: str = "prefork", concurrency: int = CONCURRENCY) -> dict:
    from tests.utils.servers import free_port
    from tests.utils.waiting import wait_until
    from tests.utils.workers import stop_workers
    from worker import admin
    from worker.processes import start_in_new_group

    data = tmp / name.replace(" ", "-")
    env = {**stack_env, "HALO_RECONCILER_DATA_DIR": str(data), **extra}
    if extra.get("HALO_RECONCILER_METRICS_PORT") == "free":
        env["HALO_RECONCILER_METRICS_PORT"] = str(free_port())
    ids = _seed(sim, env, prefix=f"M{len(list(tmp.glob('*.log')))}-")
    log = tmp / f"{data.name}.log"
    argv, how_env, cwd = _command(how, tree)
    proc = start_in_new_group([*argv, "--concurrency", str(concurrency), "--pool", pool,
                               "--hostname", f"memory-{data.name}@%h", "--without-heartbeat", "--without-gossip",
                               "--without-mingle"],
                              env={**os.environ, **env, **how_env}, cwd=cwd, stdout=open(log, "wb"),
                              stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b" ready." in log.read_bytes(), timeout=120, interval=0.2, what="the worker ready", log=log)
        pool = children(proc.pid)
        fresh = {pid: process_memory(pid) for pid in [proc.pid, *pool]}
        for round_ in range(ROUNDS):
            for practice_id in ids:
                admin.enqueue_reconcile(practice_id)
            wait_until(lambda: _reconciled(ids, round_ + 1), timeout=300, interval=0.5, what="the reconciliations",
                       log=log)
        time.sleep(1.0)  # the last acknowledgements
        warm = {pid: process_memory(pid) for pid in [proc.pid, *children(proc.pid)]}
    finally:
        stop_workers([proc], timeout=30)
    workers = [pid for pid in warm if pid != proc.pid]
    return {"name": name, "main": warm[proc.pid], "fresh": [fresh[p] for p in pool if p in fresh],
            "children": [warm[p] for p in workers], "replaced": len(set(workers) - set(pool))}


BOTH = {"HALO_RECONCILER_METRICS_PORT": "free", "HALO_RECONCILER_IDENTIFIER_QUERY": QUERY}
CONFIGS = [
    # (name, environment, how it runs)
    ("bare pool", {}, "bare"),
    ("main (baseline)", {}, "main"),
    ("main, both parts", BOTH, "main"),
    ("no gc.freeze", {}, "no-freeze"),
    ("default", {}, ""),
    ("metrics port on", {"HALO_RECONCILER_METRICS_PORT": "free"}, ""),
    ("identifier query", {"HALO_RECONCILER_IDENTIFIER_QUERY": QUERY}, ""),
    ("metrics + query", BOTH, ""),
]
QUICK = ("bare pool", "main (baseline)", "default", "metrics + query")

# What the parent holds before the fork, layer by layer (every child maps all of it: its RSS starts there),
# imported as the worker's parent imports them: without rich, which a worker writing JSON lines never
# uses (worker.logging.without_rich). The first four are the bare pool's too: the engine's floor.
WITHOUT_RICH = "from worker.logging import without_rich\nwith without_rich():\n    "
LAYERS = [
    ("interpreter", "pass"),
    ("celery + kombu", "import celery.app, celery.worker, kombu"),
    ("Celery's worker command", "import celery.bin.worker, celery.apps.worker"),
    ("redis (the broker's client)", "import redis, kombu.transport.redis"),
    ("pydantic + settings", "import worker.config"),
    ("structlog (without rich)", WITHOUT_RICH + "import structlog"),
    ("SQLAlchemy", "import sqlalchemy.orm"),
    ("SQLModel + the tables", "import models"),
    ("httpx + its transport", WITHOUT_RICH + "import httpx, httpcore, h11"),
    ("prometheus_client", "import prometheus_client"),
    ("the CLI (typer)", "import worker.cli"),
    ("the tasks, wiring, adapters", "import worker.process, tasks.reconcile, tasks.sweep, tasks.events, tasks.deliver, "
                                    "tasks.retention"),
]
FLOOR_LAYERS = 4
# What the parent no longer imports, charged after all of the above.
NOT_IMPORTED = [
    ("rich (structlog's and httpx's extra)", "import rich.console, rich.traceback, rich.pretty, rich.progress, "
                                             "rich.syntax"),
    ("Celery's umbrella CLI (its REPL)", "import celery.bin.celery"),
]
LAYER_PROBE = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
for statement in sys.argv[1:]:
    exec(statement)
    print(rss())
"""


def layers() -> list[tuple[str, float]]:
    """RSS added by each layer, then by each part no longer imported, in one fresh interpreter (median of three)."""
    steps = [*LAYERS, *NOT_IMPORTED]
    env = {**os.environ, "HALO_RECONCILER_LOG_FORMAT": "json"}  # as the bench's workers run
    runs = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", LAYER_PROBE, *[code for _, code in steps]], capture_output=True,
                              text=True, check=True, env=env)
        runs.append([float(x) for x in done.stdout.split()])
    totals = [statistics.median(r[i] for r in runs) for i in range(len(steps))]
    return [(name, totals[i] - (totals[i - 1] if i else 0.0)) for i, (name, _) in enumerate(steps)]


def main(options: list[str] | None = None) -> None:
    from tests.utils.servers import start_redis
    from worker.simulator import Simulator, serve

    quick = "--quick" in (options or [])
    configs = [c for c in CONFIGS if c[0] in QUICK] if quick else CONFIGS
    tmp = Path(tempfile.mkdtemp(prefix="halo-bench-memory-"))
    tree = _main_tree(tmp)
    redis = start_redis(tmp / "valkey")
    sim = Simulator(key=KEY)
    results = []
    try:
        with serve(sim) as server:
            base = {"BROKER_URL": redis.url, "HALO_BASE_URL": server.url, "HALO_SUBSCRIPTION_KEY": KEY,
                    "HALO_RECONCILER_LOG_LEVEL": "WARNING", "HALO_RECONCILER_LOG_FORMAT": "json"}
            for name, extra, how in configs:
                if how == "main" and tree is None:
                    continue
                if how == "bare":
                    results.append(run_bare(name, redis.url, tmp))
                    continue
                results.append(run_config(name, extra, base, tmp, sim, how=how, tree=tree))
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"the main rows run the code at {BASELINE_REF} (HALO_BENCH_BASELINE), out of git")
    print(f"worker memory: halo-reconciler worker --concurrency {CONCURRENCY} (prefork), {PRACTICES} practices x "
          f"{ROUNDS} reconciliations against the simulator; MB from /proc (peak = VmHWM)")
    print(f"{'configuration':<18} {'process':<14} {'peak RSS':>9} {'RSS':>7} {'PSS':>7} {'USS':>7}  "
          f"{'fresh RSS':>9} {'fresh USS':>9}  target {TARGET_MB:.0f} MB peak RSS")
    for result in results:
        main_ = result["main"]
        print(f"{result['name']:<18} {'main':<14} {main_['peak']:>9.1f} {main_['rss']:>7.1f} {main_['pss']:>7.1f} "
              f"{main_['uss']:>7.1f}")
        kids, fresh = result["children"], result["fresh"]
        for label, pick in (("child median", statistics.median), ("child max", max)):
            row = {k: pick([c[k] for c in kids]) for k in ("peak", "rss", "pss", "uss")}
            before = {k: pick([c[k] for c in fresh]) for k in ("rss", "uss")} if fresh else {"rss": 0.0, "uss": 0.0}
            met = "met" if label == "child max" and row["peak"] <= TARGET_MB else ("NOT met" if label == "child max" else "")
            print(f"{'':<18} {label:<14} {row['peak']:>9.1f} {row['rss']:>7.1f} {row['pss']:>7.1f} {row['uss']:>7.1f}  "
                  f"{before['rss']:>9.1f} {before['uss']:>9.1f}  {met}")
        total_pss = main_["pss"] + sum(c["pss"] for c in kids)
        print(f"{'':<18} {'whole worker':<14} {'':>9} {main_['rss'] + sum(c['rss'] for c in kids):>7.0f} "
              f"{total_pss:>7.0f} {'':>7}  (sum over {len(kids)} children + main; {result['replaced']} child(ren) replaced)")
    bare = next((r for r in results if r["name"] == "bare pool"), None)
    if bare is not None:
        print()
        print(f"against the bare pool (the engine's floor; {bare['ran']} of {len(bare['children'])} children ran "
              "no-op tasks), child median, MB added:")
        floor = {k: statistics.median(c[k] for c in bare["children"]) for k in ("peak", "pss", "uss")}
        for result in results:
            if result is bare:
                continue
            row = {k: statistics.median(c[k] for c in result["children"]) for k in ("peak", "pss", "uss")}
            print(f"  {result['name']:<18} peak RSS {row['peak'] - floor['peak']:>+6.1f}   PSS {row['pss'] - floor['pss']:>+6.1f}"
                  f"   USS {row['uss'] - floor['uss']:>+6.1f}")
    ours = {r["name"]: r for r in results}
    for name, label in (("default", "default settings"), ("metrics + query", "metrics port and identifier query on")):
        if name in ours:
            peak = max(c["peak"] for c in ours[name]["children"])
            floor_peak = statistics.median(c["peak"] for c in bare["children"]) if bare is not None else float("nan")
            record("memory", f"peak RSS per prefork child at most {TARGET_MB:.0f} MB ({label})", figure=f"{peak:.1f} MB",
                   baseline=f"bare Celery pool {floor_peak:.1f} MB",
                   ratio=f"{peak / TARGET_MB:.2f}x of {TARGET_MB:.0f} MB; {peak / floor_peak:.2f}x the bare pool",
                   met=peak <= TARGET_MB)
    print()
    print("what the parent holds before the fork (RSS added by each layer, imported in this order):")
    total = 0.0
    measured = layers()
    for i, (name, added) in enumerate(measured[:len(LAYERS)]):
        total += added
        print(f"  {name:<40} {added:>6.1f} MB   {total:>6.1f} MB")
        if i == FLOOR_LAYERS - 1:
            print(f"  {'(the bare pool imports the layers above)':<40}")
    print("no longer imported by the parent (RSS each would add, after all of the above):")
    for name, added in measured[len(LAYERS):]:
        print(f"  {name:<40} {added:>6.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
