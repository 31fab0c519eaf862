"""Drive one soak: onboard a fleet, play the schedule (world moves, report bursts, faults) on the real
stack, stop the faults, let it settle, read the facts, stop everything, check the invariants."""

from __future__ import annotations

import heapq
import itertools
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from soak import facts as facts_module
from soak.invariants import Violation, check_all, check_integrator_tickets_still_true, check_on_authoritative_guid
from soak.schedule import Event, Schedule, draw
from soak.stack import TOKEN, SoakStack
from worker.stopping import check as check_stopped, interrupt_on_terminate, restore

PMS_TYPES = ("Zedmed", "D4w", "BestPractice")
PREFIX = {"Zedmed": "Z", "D4w": "D", "BestPractice": "B"}


@dataclass
class Outcome:
    schedule: Schedule
    faults: Counter = field(default_factory=Counter)
    moves: Counter = field(default_factory=Counter)
    reports: Counter = field(default_factory=Counter)
    checked: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    trails: dict[int, list[str]] = field(default_factory=dict)
    settled_after: float | None = None
    seconds: float = 0.0
    logs: str | None = None


class World:
    """The practices as Halo holds them, moved through the simulator's control API; every site's
    active windows logged from what the simulator says after each move."""

    def __init__(self, stack: SoakStack, practices: int, rng: random.Random) -> None:
        self.stack, self.sim, self.rng = stack, stack.sim, rng
        self.fleet: list[tuple[str, str]] = [(PMS_TYPES[i % 3], f"{PREFIX[PMS_TYPES[i % 3]]}{i}") for i in range(practices)]
        self.ids: list[int] = []
        self.windows: dict[str, list[list[float | None]]] = defaultdict(list)
        self.later: list[tuple[float, int, str, dict]] = []  # (due, n, action, args): activations and returns
        self._n = itertools.count()
        self._owners = itertools.count(1)

    def onboard(self) -> None:
        from worker import admin

        for pms_type, pms_id in self.fleet:
            self.sim.add_practice(pms_type=pms_type, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
            self.ids.append(admin.onboard(pms_type, pms_id).id)
        self.observe(time.time(), time.time())

    def observe(self, before: float, after: float) -> None:
        for site in self.sim.sites():
            guid, active = site["id"], site["status"] == "active"
            spans = self.windows[guid]
            is_open = bool(spans) and spans[-1][1] is None
            if active and not is_open:
                spans.append([before, None])
            elif not active and is_open:
                spans[-1][1] = after

    def move(self, name: str, args: dict) -> None:
        pms_type, pms_id = self.fleet[args["practice"]]
        paired = pms_type == "BestPractice" or self.rng.random() < 0.7  # Zedmed/D4w: sometimes the worker pairs
        before = time.time()
        if name == "infrastructure":
            self.sim.change_guid(pms_type, pms_id, paired=paired)
        elif name == "new_owner":
            new = self.sim.change_guid(pms_type, pms_id, paired=paired)
            self.sim.rename(new, f"New Owners {next(self._owners)} Pty Ltd")
        elif name == "initialising":
            new = self.sim.change_guid(pms_type, pms_id, paired=paired, status="initialising")
            heapq.heappush(self.later, (time.monotonic() + args["active_after"], next(self._n), "activate",
                                        {"guid": new, "practice": args["practice"]}))
        elif name == "removed":
            self.sim.remove_practice(pms_type, pms_id)
            if args.get("back_after"):
                heapq.heappush(self.later, (time.monotonic() + args["back_after"], next(self._n), "back",
                                            {"practice": args["practice"]}))
        self.observe(before, time.time())

    def due(self) -> None:
        while self.later and self.later[0][0] <= time.monotonic():
            _, _, action, args = heapq.heappop(self.later)
            pms_type, pms_id = self.fleet[args["practice"]]
            before = time.time()
            if action == "activate":  # unless a later move has replaced the site meanwhile
                if self.sim.site(args["guid"])["status"] == "initialising":
                    self.sim.activate(args["guid"])
            elif action == "back":
                sites = [s for s in self.sim.sites()
                         if s["practiceManagementSiteId"] == pms_id and s["status"] == "active"]
                if not sites:
                    self.sim.change_guid(pms_type, pms_id)
            self.observe(before, time.time())

    def flush(self) -> None:
        """Whatever was still due happens now (the world stops moving at the end of the chaos phase)."""
        self.later = [(0.0, n, a, args) for (_, n, a, args) in self.later]
        heapq.heapify(self.later)
        self.due()


class Reporter:
    """The applications: each burst reports practices' current GUIDs (as the application knows them)
    through the Python hook or the HTTP API, several times each, from threads."""

    def __init__(self, stack: SoakStack) -> None:
        self.stack = stack
        self.log: list[tuple[float, str, int, str, bool]] = []  # (at, guid, practice id, channel, taken)
        self.bursts: Counter = Counter()
        self.pool = ThreadPoolExecutor(6, thread_name_prefix="soak-report")
        self.http = httpx.Client(timeout=2.0, headers={"Authorization": f"Bearer {TOKEN}"})
        self._lock = threading.Lock()

    def current_guids(self, practice_ids: list[int]) -> dict[int, str] | None:
        from sqlmodel import select

        from models import Practice
        from worker import db

        try:
            with db.new_session() as session:
                rows = session.exec(select(Practice.id, Practice.halo_guid).where(Practice.id.in_(practice_ids))).all()
            return dict(rows)
        except Exception:  # PostgreSQL restarting: the application has no answer either, and waits
            return None

    def burst(self, channel: str, practice_ids: list[int], repeat: int) -> None:
        guids = self.current_guids(practice_ids)
        if guids is None:
            return
        for pid in guids:
            self.bursts[pid] += 1
        jobs = [(guid, pid) for pid, guid in guids.items()] * repeat
        for guid, pid in jobs:
            self.pool.submit(self._one, channel, guid, pid)

    def _one(self, channel: str, guid: str, practice_id: int) -> None:
        at = time.time()
        if channel == "hook":
            from worker.hooks import report_forbidden

            taken = report_forbidden(guid, "Forbidden")
        else:
            try:
                taken = self.http.post(self.stack.api_url + "/v1/reports",
                                       json={"guid": guid, "message": "Forbidden"}).status_code == 202
            except httpx.HTTPError:
                taken = False
        with self._lock:
            self.log.append((at, guid, practice_id, channel, taken))

    def drain(self) -> None:
        self.pool.shutdown(wait=True)
        self.pool = ThreadPoolExecutor(6, thread_name_prefix="soak-report")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()


class Faults:
    """Inject and end the schedule's faults on the stack."""

    HALO_DURABLE = {"quota": "quota_exceeded", "ip_refused": "ip_not_allowed", "key_rotated": "unauthorized"}

    def __init__(self, stack: SoakStack, rng: random.Random) -> None:
        self.stack, self.rng = stack, rng
        self.durable: set[str] = set()
        self.unrecorded = 0  # runs a fault may have cut short before they recorded anything
        self.killed_workers: set[int] = set()

    def start(self, name: str, args: dict) -> bool:
        s = self.stack
        if name == "kill_pool":
            children = s.pool_children(args["worker"])
            if not children:
                return False
            os.kill(self.rng.choice(children), signal.SIGKILL)
            self.unrecorded += 1
        elif name == "kill_worker":
            if args["worker"] in self.killed_workers:
                return False
            s.kill_worker(args["worker"])
            self.killed_workers.add(args["worker"])
            self.unrecorded += 2
        elif name == "valkey_restart":
            s.redis.restart()
            s.started.append(s.redis.proc)
            self.unrecorded += 4
        elif name == "postgres_restart":
            s.postgres.restart()
            s.started.append(s.postgres.proc)
            self.unrecorded += 4
        elif name == "broker_stall":
            s.proxy.stall()
        elif name == "halo_429":
            s.sim.inject("rate_limited", times=args["times"], retry_after=args["retry_after"])
        elif name == "halo_5xx":
            s.sim.inject("server_error", times=args["times"], status=args["status"])
        elif name == "halo_garbage":
            s.sim.inject(args["kind"], times=args["times"])
        elif name == "halo_latency":
            s.sim.set_latency(args["delay"])
        elif name in self.HALO_DURABLE:
            self.durable.add(name)
            s.sim.inject(self.HALO_DURABLE[name])
        elif name == "second_beat":
            s.start_extra_beat()
        else:
            raise ValueError(f"unknown fault {name}")
        return True

    def end(self, name: str) -> None:
        s = self.stack
        if name == "kill_worker":
            for i in sorted(self.killed_workers):
                s.start_worker(i)
            self.killed_workers.clear()
        elif name == "broker_stall":
            s.proxy.resume()
        elif name == "halo_latency":
            s.sim.set_latency(0)
        elif name in self.HALO_DURABLE:
            self.durable.discard(name)
            s.sim.clear_faults()
            for other in self.durable:
                s.sim.inject(self.HALO_DURABLE[other])
        elif name == "second_beat":
            s.stop_extra_beats()

    def stop_all(self) -> None:
        self.durable.clear()
        self.stack.sim.clear_faults()
        self.stack.sim.set_latency(0)
        self.killed_workers.clear()
        self.stack.ensure_running()


def soak(*, minutes: float, seed: int, mix: str = "full", practices: int = 24, settle_seconds: float = 150,
         keep_logs: bool = False, say=print) -> Outcome:
    seconds = minutes * 60
    schedule = draw(seed, seconds, practices, mix=mix)
    outcome = Outcome(schedule)
    # Their own generators, so what one draws (a pool process to kill exists or not) never shifts the other.
    world_rng, fault_rng = random.Random(seed ^ 0x50A4), random.Random(seed ^ 0xFA17)
    stack = SoakStack(keep_logs=keep_logs)
    reporter = None
    started = time.monotonic()
    previous_term = interrupt_on_terminate()  # SIGTERM or SIGHUP: the finally below stops every process
    try:
        say(f"soak: seed {seed}, {minutes:g} min of chaos ({mix} mix, {schedule.count('fault')} faults, "
            f"{schedule.count('world')} world moves, {schedule.count('burst')} report bursts), "
            f"logs in {stack.tmp}")
        stack.start()
        _use(stack.env)
        from worker import db

        db.upgrade_schema()
        world = World(stack, practices, world_rng)
        world.onboard()
        stack.sim.reset_counters()
        stack.start_processes()
        reporter = Reporter(stack)
        faults = Faults(stack, fault_rng)
        say(f"soak: {practices} practices onboarded; two workers, beat and serve running; chaos starts")

        chaos_start = time.monotonic()
        for event in schedule.events:
            while True:
                check_stopped()  # a stop whose interrupt something swallowed
                world.due()
                stack.notice_crashes()
                wait = chaos_start + event.at - time.monotonic()
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.2))
            _play(event, world, reporter, faults, outcome)
        remaining = chaos_start + seconds - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

        say(f"soak: chaos over ({sum(outcome.faults.values())} faults injected); stopping faults and settling")
        stack.notice_crashes()
        faults.stop_all()
        world.flush()
        reporter.drain()
        bound = settle_bound(stack.env)
        # A message a killed worker held unacknowledged is handed out again after the visibility
        # timeout: work left only in the broker may take that long more (the product's design).
        work_bound = bound + float(stack.env["HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS"])
        outcome.settled_after, late = _settle(stack, world, reporter, faults, max(settle_seconds, work_bound + 10),
                                              bound, work_bound)
        reporter.drain()
        facts = facts_module.read(stack, world, reporter, faults, pairing=True)
        outcome.trails = facts_module.trails(facts)
    finally:
        if reporter is not None:
            reporter.close()
        leftovers = stack.close()
        restore(previous_term)
        outcome.seconds = time.monotonic() - started
    if keep_logs or leftovers:
        outcome.logs = str(stack.tmp)
    facts.leftovers = leftovers
    facts.crashes = list(stack.crashes)
    facts.watched = len(stack.started)
    facts.late = late
    outcome.reports = Counter(f"{channel} {'taken' if taken else 'refused'}" for _, _, _, channel, taken in reporter.log)
    outcome.checked, outcome.violations = check_all(facts)
    if outcome.violations and stack.tmp.exists():
        outcome.logs = str(stack.tmp)
    return outcome


def _use(env: dict[str, str]) -> None:
    """Point this process (the soak is also an application: it reports through the hook) at the stack."""
    from bench.stack import forget_clients
    from worker.celery_app import follow_settings
    from worker.config import get_settings
    from worker.logging import configure_logging

    # This process logs only errors: its hook's warnings during a stall are expected, and the table
    # is what it has to say.
    os.environ.update({**env, "HALO_RECONCILER_LOG_LEVEL": "ERROR"})
    forget_clients()
    follow_settings()
    configure_logging(get_settings())


def _play(event: Event, world: World, reporter: Reporter, faults: Faults, outcome: Outcome) -> None:
    if event.kind == "world":
        world.move(event.name, event.args)
        outcome.moves[event.name] += 1
    elif event.kind == "burst":
        ids = [world.ids[i] for i in event.args["practices"]]
        reporter.burst(event.name, ids, event.args["repeat"])
    elif event.kind == "fault":
        if faults.start(event.name, event.args):
            outcome.faults[event.name] += 1
    elif event.kind == "fault_end":
        faults.end(event.name)


def settle_bound(env: dict[str, str]) -> float:
    """How long settling may take once the faults stop: the longest wait the settings allow for kept
    or backed-off work (breaker probe, backoff, re-check, each at its maximum), a sweep, the
    applications' next report, and 15 s for the runs themselves."""
    longest = max(float(env[f"HALO_RECONCILER_{name}"]) for name in
                  ("BREAKER_PROBE_MAX_SECONDS", "BACKOFF_MAX_SECONDS", "RECHECK_MAX_SECONDS"))
    return longest + float(env["HALO_RECONCILER_SWEEP_INTERVAL_SECONDS"]) + REPORT_EVERY + 15


REPORT_EVERY = 10.0  # while settling, the applications report each misplaced practice this often


def _settle(stack: SoakStack, world: World, reporter: Reporter, faults: Faults, limit: float,
            bound: float, work_bound: float) -> tuple[float | None, list[tuple[int | None, str]]]:
    """Let the system settle: the applications keep meeting 403s with the GUIDs they have (one report
    per misplaced practice every ``REPORT_EVERY`` s) until every practice is where Halo's truth says,
    Halo's refusals are no longer ticketed, and no work is left; bounded by ``limit`` seconds.

    Returns how long it took (None: not within ``limit``), and what was still wrong ``bound`` seconds
    in, each with the practice's coordination keys and their time to live (what strands it). When every
    practice is right and the only work left is a message the broker still holds (queued, or
    unacknowledged by a connection the faults cut), it is judged at ``work_bound`` instead."""
    import redis

    from tests.utils.workers import is_idle

    start = time.monotonic()
    client = redis.Redis(host="127.0.0.1", port=stack.redis.port, socket_timeout=2)
    last_reports = 0.0
    in_a_row = 0
    late: list[tuple[int | None, str]] = []
    try:
        while time.monotonic() - start < limit:
            try:
                facts = facts_module.read(stack, world, reporter, faults)
                wrong = {v.practice_id: v.what for v in check_on_authoritative_guid(facts)}
                refused = check_integrator_tickets_still_true(facts)
                idle = is_idle(client)
            except Exception as exc:  # a part still coming back
                wrong, refused, idle = {None: f"facts unreadable: {exc}"}, [], False
            stack.notice_crashes()
            if not wrong and not refused and idle:
                in_a_row += 1
                if in_a_row >= 3:
                    return time.monotonic() - start, late
            else:
                in_a_row = 0
                elapsed = time.monotonic() - start
                in_broker = not wrong and not refused and _broker_holds_messages(client)
                if not late and elapsed > (work_bound if in_broker else bound):
                    late = _still_wrong(client, wrong, refused, idle, work_bound if in_broker else bound)
            if time.monotonic() - last_reports >= REPORT_EVERY:
                last_reports = time.monotonic()
                misplaced = [pid for pid in wrong if pid is not None]
                if misplaced:
                    reporter.burst("hook", misplaced, 1)
            time.sleep(1.0)
        return None, late
    finally:
        client.close()


def _broker_holds_messages(client) -> bool:
    from tests.utils.workers import QUEUE_NAMES

    try:
        return bool(any(client.llen(queue) for queue in QUEUE_NAMES) or client.hlen("unacked"))
    except Exception:  # the store still coming back: judge it at the plain bound
        return False


def _still_wrong(client, wrong: dict, refused: list, idle: bool, bound: float) -> list[tuple[int | None, str]]:
    from reconciler.adapters.coordination import keys

    def held(pid: int) -> str:
        found = []
        for key in (keys.processing(pid), keys.dirty(pid), keys.recheck(pid)):
            try:
                ttl = client.ttl(key)
            except Exception:
                continue
            if ttl != -2:
                found.append(f"{key} ttl {ttl} s")
        return "; ".join(found) or "no coordination key"

    out = [(pid, f"still wrong {bound:.0f} s after the faults stopped: {what} [{held(pid) if pid else ''}]")
           for pid, what in wrong.items()]
    out += [(None, f"still ticketed {bound:.0f} s after the faults stopped: {v.what}") for v in refused]
    if not wrong and not refused and not idle:
        # Every practice is right; what is left? A message held unacknowledged by a connection the
        # faults cut is handed out again after the visibility timeout: waiting for it is the design,
        # not a violation. A practice marked queued or running with nothing to run it is stranded.
        marks = []
        for pattern in (keys.dirty("*"), keys.processing("*")):
            for key in client.scan_iter(match=pattern, count=1000):
                marks.append(f"{key.decode()} ttl {client.ttl(key)} s")
        if marks:
            out.append((None, f"practices still marked queued or running {bound:.0f} s after the faults "
                              f"stopped, every one of them already right: {'; '.join(sorted(marks)[:10])}"))
    return out
