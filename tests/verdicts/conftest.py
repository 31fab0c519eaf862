"""A small world for the verdict tests: the in-process simulator, the embedded SQLite or PostgreSQL, the real client.

Every verdict test runs on both databases (``database``: SQLite, PostgreSQL 15), and twice on each:
``world[valkey]`` drives ``reconcile`` with production's coordination
(``RedisRuns``, the ``RedisBreaker``) against the suite's throw-away Valkey, flushed for each test;
``world[fake]`` with the in-memory ``Runs`` of ``tests/utils/runs.py`` and a breaker over fakeredis.
Either way the test sets the 403 count by hand (``world.forbidden``): over Valkey it is written into
the ledger's current bucket before each run.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import redis

from models import PmsType, Practice, Ticket, Trigger
from reconciler.adapters.store import SqlStore
from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.breaker import RedisBreaker
from reconciler.adapters.coordination.ledger import bucket, bucket_lifetime
from reconciler.adapters.coordination.marks import RedisCoordination
from reconciler.adapters.coordination.runs import RedisRuns
from reconciler.adapters.coordination.workqueue import WorkQueue
from reconciler.adapters.halo_client import HaloClient
from reconciler.core.breaker import fingerprint
from reconciler.usecases import decisions
from reconciler.usecases.onboarding import onboard_practice, parse_request
from reconciler.usecases.reconcile import Deps, ReconcileResult, reconcile
from worker import db, wiring
from worker.config import get_settings
from tests.utils.pairing import RecordingSimulator
from tests.utils.runs import PortRuns

KEY = "test-subscription-key-7f3a"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Ledger:
    """The coordination port with a 403 count the test sets by hand."""

    forbidden: dict[tuple[int, str], int]
    practice_ids: dict[str, int] = field(default_factory=dict)

    def forbidden_count(self, guid: str, *, since: datetime | None) -> int:
        return sum(n for (pid, g), n in self.forbidden.items() if g == guid)

    def confirmed_since(self, practice_id: int) -> datetime | None:
        return None  # counted since the last verification, as the test sets the count by hand

    def note_answered(self, practice_id: int) -> None:
        pass

    def note_reconciled(self, practice_id: int, **_: object) -> None:
        pass


@dataclass
class World:
    sim: RecordingSimulator
    client: HaloClient
    clock: Clock
    forbidden: dict[tuple[int, str], int] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # The integrator-wide breaker over fakeredis (plain hashes, sets and SET NX: no Lua involved).
    breaker: RedisBreaker = field(default_factory=lambda: RedisBreaker(
        fakeredis.FakeRedis(), key_fingerprint=fingerprint(KEY), base_seconds=60, cap_seconds=3600))
    requeued: list[int] = field(default_factory=list)
    valkey: redis.Redis | None = None  # production's coordination over this server; None: the in-memory one

    def deps(self, **policy_overrides: object) -> Deps:
        policy = replace(wiring.policy(), **policy_overrides)
        return Deps(
            halo=self.client,
            unit_of_work=wiring.unit_of_work,
            policy=policy,
            runs=self._runs(policy),
            clock=self.clock,
            random=lambda: 0.5,
            breaker=self.breaker,
            requeue=self.requeued.append,
        )

    def _runs(self, policy) -> RedisRuns | PortRuns:  # noqa: ANN001
        if self.valkey is None:
            return PortRuns(queue=None, coordination=Ledger(self.forbidden))
        # The counts the test set, as the reports would have left them: in this minute's bucket.
        for name in self.valkey.scan_iter(keys.forbidden_bucket("*", 0)[:-1] + "*"):
            self.valkey.delete(name)
        totals: dict[str, int] = {}
        for (_, guid), n in self.forbidden.items():
            totals[guid] = totals.get(guid, 0) + n
        for guid, n in totals.items():
            self.valkey.set(keys.forbidden_bucket(guid, bucket(time.time())), n,
                            ex=bucket_lifetime(policy.forbidden_window_seconds))
        coordination = RedisCoordination(self.valkey, window_seconds=policy.forbidden_window_seconds,
                                         recheck_min_seconds=10, recheck_max_seconds=40)
        return RedisRuns(WorkQueue(self.valkey), coordination, self.breaker)

    def onboard(self, name: str = "Halo Clinic South", pms_id: str | None = None,
                pms_type: PmsType = PmsType.BEST_PRACTICE, pairing_code: str | None = None) -> int:
        pms_id = pms_id or f"BP{next(self._ids):05d}"
        self.sim.add_practice(pms_type=pms_type, pms_id=pms_id, practice_name=name)
        with wiring.unit_of_work() as unit:
            practice = onboard_practice(unit, self.client, parse_request(str(pms_type), pms_id, pairing_code),
                                        now=self.clock())
            unit.commit()
            return practice.id  # type: ignore[return-value]

    def reconcile(self, practice_id: int, trigger: Trigger = Trigger.FORBIDDEN, **policy: object) -> ReconcileResult:
        # A manual run here is the operator's in-process one (``reconcile --now``).
        return reconcile(practice_id, trigger=trigger, deps=self.deps(**policy), operator=trigger is Trigger.MANUAL)

    def practice(self, practice_id: int) -> Practice:
        with db.new_session() as session:
            row = SqlStore(session).practice(practice_id)
            session.expunge(row)
            return row

    def tickets(self) -> list[Ticket]:
        from sqlmodel import select

        with db.new_session() as session:
            rows = list(session.exec(select(Ticket).order_by(Ticket.id)).all())
            for row in rows:
                session.expunge(row)
            return rows

    def history(self, practice_id: int) -> list[tuple[str, str]]:
        with db.new_session() as session:
            return [(h.guid, h.reason) for h in SqlStore(session).guid_history(practice_id)]

    def finds(self, pms_id: str | None = None) -> int:
        return self.sim.call_count("find_sites", pms_id)

    def approve(self, practice_id: int, **policy: object) -> decisions.Decided:
        return decisions.approve(wiring.unit_of_work, self.client, practice_id=practice_id, now=self.clock(),
                                 policy=self.deps(**policy).policy, actor="test-approver")

    def reject(self, practice_id: int) -> None:
        with wiring.unit_of_work() as unit:
            decisions.reject(unit, practice_id=practice_id, now=self.clock(), actor="test-approver")
            unit.commit()

    def pair(self, practice_id: int, code: str) -> decisions.Decided:
        return decisions.pair(wiring.unit_of_work, self.client, practice_id=practice_id, pairing_code=code,
                              now=self.clock(), actor="test-approver")


# Every verdict test runs on the embedded SQLite and on PostgreSQL 15 (a database of its own on the
# suite's server): a run's write takes another path on each (``SqlStore.write_run``). A test marked
# ``parametrize("database", ["postgresql"], indirect=True)`` runs on PostgreSQL only.
def _on_postgresql(url: str, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    db.reset_engine()
    db.upgrade_schema()  # a production database is migrated by `db upgrade`, not on first use


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def database(request, monkeypatch):
    if request.param == "postgresql":
        _on_postgresql(request.getfixturevalue("postgres_url"), monkeypatch)
    yield request.param
    db.reset_engine()


@pytest.fixture(params=["valkey", "fake"])
def world(request) -> World:  # noqa: ANN001
    db.ensure_schema()
    sim = RecordingSimulator(key=KEY)
    client = HaloClient(base_url="https://api.haloconnect.io", subscription_key=KEY, transport=sim.transport(),
                        sleep=lambda seconds: None)
    if request.param == "valkey":
        valkey = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        breaker = RedisBreaker(valkey, key_fingerprint=fingerprint(KEY), base_seconds=60, cap_seconds=3600)
        yield World(sim=sim, client=client, clock=Clock(), breaker=breaker, valkey=valkey)
        valkey.close()
    else:
        yield World(sim=sim, client=client, clock=Clock())
    client.close()
