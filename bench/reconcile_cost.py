"""The cost of one reconciliation, close to the engine: SQL statements and CPU, against a no-op task.

1. **Statements**: an ``unchanged`` verification and a switch through the real use case
   (``reconciler.usecases.reconcile``, ``worker.wiring.reconcile_deps()``: the real store, the real
   Halo client against the simulator over HTTP, real Valkey), counted by a SQLAlchemy
   ``before_cursor_execute`` listener, on the embedded SQLite and on PostgreSQL 15; and the Redis round
   trips of the same runs, counted where redis-py writes to the socket and named by what was sent.
2. **CPU**: one real Celery worker (one prefork process, PostgreSQL, Redis broker) runs N no-op
   tasks, then N ``halo.reconcile_practice`` tasks on unchanged practices, then N on practices whose
   GUID moved; the worker's CPU (main process and pool, from /proc) per task of each. The no-op task
   is the engine's own floor: receiving, running and acknowledging one message.

``python3 dev.py bench reconcile`` (``--quick``: a quarter of the runs). This module is also the
worker's app (``celery -A bench.reconcile_cost worker``): the product's tasks and ``bench.noop``, with
the product's process set-up (``worker.process``: logging, the warm-up, the freeze before each fork),
as ``halo-reconciler worker`` has it.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.targets import record
from worker.celery_app import app as _app

# The statement targets of issue 16; the CPU targets of issue 23 (a no-op task's CPU times this much).
MAX_UNCHANGED, MAX_SWITCH = 4, 6
MAX_CPU_RATIO = {"unchanged": 4.0, "switch": 5.0}


@_app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    return None


def __getattr__(name: str):  # noqa: ANN202
    if name in ("app", "celery"):
        # How Celery finds this module's app (``-A bench.reconcile_cost``): the worker then has the
        # product's signal handlers, as ``celery -A worker`` does (worker/__init__.py); the benchmark's
        # own process, which only publishes, does not load them.
        from worker import process  # noqa: F401

        return _app
    raise AttributeError(f"module 'bench.reconcile_cost' has no attribute {name!r}")


_seeded = 0


def _seed(control, n: int) -> list[tuple[str, str]]:  # noqa: ANN001
    """``n`` practices new to the simulator (PMS IDs never seeded before in this run)."""
    global _seeded
    made = control.seed(n, start=_seeded + 1)
    _seeded += n
    return made


@contextmanager
def _round_trips():
    """Every Redis round trip the run makes, named by what was sent: a command, a script (by its
    ``lua/*.lua`` name) or a pipeline of commands. Counted where redis-py writes to the socket, so a
    health-check PING or a script's NOSCRIPT reload counts too; the names come from the client calls."""
    # Imported when counting, as the module's other steps do: the worker app imports this module too.
    import hashlib

    import redis
    from redis.client import Pipeline
    from redis.connection import AbstractConnection

    from reconciler.adapters.coordination import scripts

    lua = Path(scripts.__file__).parent / "lua"
    names = {hashlib.sha1(scripts.load(path.stem).encode()).hexdigest(): path.stem for path in lua.glob("*.lua")}
    sent: list[str] = []
    pending: list[str] = []
    send, execute_command, execute = (AbstractConnection.send_packed_command, redis.Redis.execute_command,
                                      Pipeline.execute)

    def counted_send(self, command, check_health=True):  # noqa: ANN001, ANN202
        sent.append(pending.pop() if pending else "?")
        return send(self, command, check_health)

    def named_command(self, *args, **options):  # noqa: ANN001, ANN202
        name = str(args[0]).upper()
        if name in ("EVALSHA", "EVAL"):
            name = names.get(str(args[1]), "EVALSHA ?")
        pending[:] = [name]
        return execute_command(self, *args, **options)

    def named_pipeline(self, *args, **options):  # noqa: ANN001, ANN202
        pending[:] = ["pipeline(" + " ".join(str(c[0][0]).upper() for c in self.command_stack) + ")"]
        return execute(self, *args, **options)

    AbstractConnection.send_packed_command = counted_send
    redis.Redis.execute_command = named_command
    Pipeline.execute = named_pipeline
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = send
        redis.Redis.execute_command = execute_command
        Pipeline.execute = execute


def _kind(statement: str) -> str:
    """``SELECT practices``: the verb and the first table named outside any parentheses. A statement
    that opens with data-modifying CTEs names each, then its own: ``UPDATE practices + INSERT
    reconciliations``."""
    depth, words, bodies, in_body, main_from = 0, [], [], False, 0
    for word in statement.replace("(", " ( ").replace(")", " ) ").split():
        if word == "(" and depth == 0 and words[:1] == ["WITH"] and words[-1] == "AS":
            depth, in_body = 1, True
            bodies.append([])
            continue
        depth += (word == "(") - (word == ")")
        if in_body and depth == 0:  # the CTE's body closed: the main statement starts after it
            in_body, main_from = False, len(words)
        elif in_body:
            bodies[-1].append(word)
        elif depth == 0:
            words.append(word)
    if bodies:
        main = [w for w in words[main_from:] if w != ","]
        return " + ".join([_kind(" ".join(body)) for body in bodies] + [_kind(" ".join(main))])
    table = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("FROM", "INTO", "UPDATE")), "?")
    return f"{words[0]} {table}"


def count_statements(stack, control, env: dict[str, str], rounds: int,
                     trips: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """``rounds`` unchanged runs and ``rounds`` switches, each counted; every run of a case must agree.
    The first of each is a warm-up (the process's first look at the schema) and is not counted.
    ``trips`` receives each case's Redis round trips (every counted run must make the same)."""
    from bench.fleet import seed_database
    from models import Action, Trigger, Verdict
    from reconciler.usecases.reconcile import reconcile
    # Imported when counting, as the module's other steps import theirs: the worker app imports this module too.
    from tests.utils.sql import counted_statements
    from worker import db, wiring

    stack.use(env)
    db.upgrade_schema()
    practices = _seed(control, 2 * rounds)
    ids = seed_database(practices)
    seen: dict[str, list[str]] = {}
    for n, (pid, (pms_id, _)) in enumerate(zip(ids, practices)):
        case = "unchanged" if n < rounds else "switch"
        if case == "switch":
            control.change_guid("BestPractice", pms_id)
        with counted_statements() as statements, _round_trips() as sent:
            result = reconcile(pid, trigger=Trigger.FORBIDDEN, deps=wiring.reconcile_deps())
        want = (Verdict.UNCHANGED, Action.MARKED_VERIFIED) if case == "unchanged" else (
            Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED)
        if (result.verdict, result.action) != want:
            raise AssertionError(f"{case}: got {result.verdict}/{result.action}")
        kinds = [_kind(s) for s in statements]
        if n in (0, rounds):
            continue
        if seen.setdefault(case, kinds) != kinds:
            raise AssertionError(f"{case}: statements differ between runs: {seen[case]} and {kinds}")
        if trips is not None and trips.setdefault(case, sent) != sent:
            raise AssertionError(f"{case}: Redis round trips differ between runs: {trips[case]} and {sent}")
    return seen


def _wait_done(stack, expect) -> None:  # noqa: ANN001
    from tests.utils.workers import wait_until_idle

    wait_until_idle(stack.redis.url, timeout=600)
    expect()


ROUNDS = 5


def cpu_per_task(stack, control, env: dict[str, str], n: int, pool: str = "prefork") -> dict[str, Any]:
    """Worker CPU seconds per task: no-op, unchanged reconciliation, switch (``pool``: Celery's pool,
    one process or one thread).

    The three kinds are measured in ``ROUNDS`` interleaved rounds (``n / ROUNDS`` tasks of each kind
    a round, no-op first): on a shared machine the speed of a CPU second drifts over a run, and a
    no-op measured minutes before the switches would carry that drift into their ratio. Each kind's
    figure is the median of its rounds; each ratio is the median of the rounds' own ratios."""
    from statistics import median

    from sqlmodel import func, select

    from bench.fleet import seed_database
    from bench.stack import tree_cpu_ns_seconds
    from models import Reconciliation
    from worker import db

    stack.postgres.create_database(f"bench_cpu_{pool}")
    stack.use(env)
    db.upgrade_schema()
    unchanged = _seed(control, n)
    moving = _seed(control, n)
    unchanged_ids, moving_ids = seed_database(unchanged), seed_database(moving)
    first_id = seed_database(_seed(control, 1))[0]
    for pms_id, _ in moving:
        control.change_guid("BestPractice", pms_id)
    # The deliveries a run queues (change events after a switch) are part of what it costs, and the
    # wait for "nothing left to do" counts that queue too: the worker consumes both.
    [worker] = stack.start_workers(env, app="bench.reconcile_cost", count=1, concurrency=1,
                                   queues="reconcile,deliver", pool=pool)

    def rows(action: str) -> int:
        with db.new_session() as session:
            return session.exec(select(func.count()).select_from(Reconciliation)
                                .where(Reconciliation.action == action)).one()

    def measured(send, expect, tasks: int) -> float:  # noqa: ANN001
        # The scheduler's nanoseconds, not /proc's 10 ms ticks: the worker's processes live through
        # the measurement, and a tick is 0.1 ms a task at --quick's 100 tasks.
        before = tree_cpu_ns_seconds(worker.pid)
        send()
        _wait_done(stack, expect)
        return (tree_cpu_ns_seconds(worker.pid) - before) / tasks

    def check(action: str, want: int):  # noqa: ANN202
        def expect() -> None:
            if rows(action) != want:
                raise AssertionError(f"{rows(action)} {action} reconciliations, expected {want}")
        return expect

    def reconcile_all(ids: list[int]):  # noqa: ANN202
        return lambda: [_app.send_task("halo.reconcile_practice", args=[pid, "forbidden"], queue="reconcile")
                        for pid in ids]

    # A warm-up of each kind first: the pool process imports, connects and fills its caches once.
    noop.apply_async(queue="reconcile")
    _wait_done(stack, lambda: None)
    # The first reconciliation in a fresh pool process pays once for what later ones reuse: the
    # schema check, the database and Redis connections, the Halo client, SQLAlchemy's compiled cache.
    before = tree_cpu_ns_seconds(worker.pid)
    _app.send_task("halo.reconcile_practice", args=[first_id, "forbidden"], queue="reconcile")
    _wait_done(stack, check("marked_verified", 1))
    first = tree_cpu_ns_seconds(worker.pid) - before
    idle_before, idle_began = tree_cpu_ns_seconds(worker.pid), time.monotonic()
    time.sleep(2.0)
    idle = (tree_cpu_ns_seconds(worker.pid) - idle_before) / (time.monotonic() - idle_began)
    per_round = n // ROUNDS
    rounds: dict[str, list[float]] = {"noop": [], "unchanged": [], "switch": []}
    for r in range(ROUNDS):
        part = slice(r * per_round, (r + 1) * per_round)
        rounds["noop"].append(measured(lambda: [noop.apply_async(queue="reconcile") for _ in range(per_round)],
                                       lambda: None, per_round))
        rounds["unchanged"].append(measured(reconcile_all(unchanged_ids[part]),
                                            check("marked_verified", (r + 1) * per_round + 1), per_round))
        rounds["switch"].append(measured(reconcile_all(moving_ids[part]), check("switched", (r + 1) * per_round),
                                         per_round))
    stack.stop([worker])
    figures: dict[str, Any] = {kind: median(values) for kind, values in rounds.items()}
    for case in ("unchanged", "switch"):
        figures[f"{case}_ratios"] = [c / b for c, b in zip(rounds[case], rounds["noop"])]
        figures[f"{case}_ratio"] = median(figures[f"{case}_ratios"])
    return {**figures, "idle_per_s": idle, "first": first, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[2:] if argv is None else argv
    quick = "--quick" in argv
    n = 100 if quick else 400
    # --pool threads: the worker's CPU under the threads pool (halo-reconciler worker's default) instead.
    pool = argv[argv.index("--pool") + 1] if "--pool" in argv else "prefork"
    from bench.stack import KEY, Stack
    # As in the storm: switching at full speed (a real fleet in which every practice moves within the
    # hour would, rightly, trip the mass-change guard and be held), and no global rate limit.
    from bench.storm import BENCH_SETTINGS
    from worker.simulator.control import SimulatorControl

    stack = Stack()
    try:
        control = SimulatorControl(stack.sim_url, key=KEY)
        control.set_latency(0)
        counts, trips = {}, {}
        sqlite = {**stack.env("unused", **BENCH_SETTINGS), "DATABASE_URL": f"sqlite:///{stack.tmp / 'count.sqlite3'}"}
        counts["sqlite"] = count_statements(stack, control, sqlite, 5)
        stack.postgres.create_database("bench_count")
        counts["postgresql"] = count_statements(stack, control, stack.env("bench_count", **BENCH_SETTINGS), 5,
                                                trips=trips)
        cpu = cpu_per_task(stack, control, stack.env(f"bench_cpu_{pool}", **BENCH_SETTINGS), n, pool=pool)
    finally:
        stack.close()

    print("reconcile: one reconciliation through the real use case and store; Halo is the simulator over HTTP "
          "(0 ms); statements counted with before_cursor_execute")
    print(f"{'case':<10} {'database':<11} {'statements':>10} {'target':>7}  statements")
    for database, cases in counts.items():
        for case, kinds in cases.items():
            target = MAX_UNCHANGED if case == "unchanged" else MAX_SWITCH
            print(f"{case:<10} {database:<11} {len(kinds):>10} {'<= ' + str(target):>7}  {', '.join(kinds)}")
    print("Redis round trips per run (PostgreSQL runs above; counted at redis-py's socket write)")
    for case, sent in trips.items():
        print(f"{case:<10} {len(sent):>3}  {', '.join(sent)}")
    print(f"CPU per task in one real Celery worker (1 {pool} {'process' if pool == 'prefork' else 'slot'}, Redis broker, "
          f"PostgreSQL), {n} tasks each in {ROUNDS} interleaved rounds (no-op, unchanged, switch); the median "
          f"round; worker idle {cpu['idle_per_s'] * 1000:.1f} ms/s, not subtracted")
    print(f"{'task':<24} {'CPU ms':>8} {'/ no-op':>8}  {'each round (ms)':<34} each round / its no-op")
    print(f"{'no-op (bench.noop)':<24} {cpu['noop'] * 1000:>8.2f} {1.0:>7.2f}x  "
          f"{' '.join(f'{v * 1000:.2f}' for v in cpu['rounds']['noop']):<34}")
    for case in ("unchanged", "switch"):
        print(f"{'reconcile, ' + case:<24} {cpu[case] * 1000:>8.2f} {cpu[case + '_ratio']:>7.2f}x  "
              f"{' '.join(f'{v * 1000:.2f}' for v in cpu['rounds'][case]):<34} "
              f"{' '.join(f'{v:.2f}x' for v in cpu[case + '_ratios'])}")
    print(f"{'first in a fresh process':<24} {cpu['first'] * 1000:>8.2f} {cpu['first'] / cpu['noop']:>7.2f}x"
          "  (one unchanged run: connections, schema check, caches; paid once per pool process)")
    print("(a case's ratio is the median of its rounds' ratios, each against the no-op measured just before it)")
    print(f"target: a reconciliation at most {MAX_CPU_RATIO['unchanged']:.0f}x (unchanged) and "
          f"{MAX_CPU_RATIO['switch']:.0f}x (switch) the no-op task's CPU; "
          f"statements at most {MAX_UNCHANGED} (unchanged) and {MAX_SWITCH} (switch)")
    for case, most in (("unchanged", MAX_UNCHANGED), ("switch", MAX_SWITCH)):
        found = {database: len(cases[case]) for database, cases in counts.items()}
        record("reconcile", f"SQL statements of {'an' if case == 'unchanged' else 'a'} {case} run at most {most}",
               figure=", ".join(f"{n} ({database})" for database, n in found.items()),
               baseline=f"Redis round trips {len(trips.get(case, []))}", ratio=f"{max(found.values())} of {most}",
               met=max(found.values()) <= most)
    for case in ("unchanged", "switch"):
        ratio = cpu[f"{case}_ratio"]
        most = MAX_CPU_RATIO[case]
        record("reconcile", f"worker CPU of {'an' if case == 'unchanged' else 'a'} {case} run at most "
               f"{most:.0f}x a no-op task ({pool} pool)", figure=f"{cpu[case] * 1000:.2f} ms",
               baseline=f"no-op task {cpu['noop'] * 1000:.2f} ms", ratio=f"{ratio:.2f}x (<= {most:.0f}x)",
               met=ratio <= most)


if __name__ == "__main__":
    main(sys.argv[1:])
