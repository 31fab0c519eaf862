"""``halo-reconciler health``: is this deployment able to do its job right now?

Six checks, each bounded and independent (one failing does not hide the others): the database
answers and its schema is the one this code needs; the broker and coordination store (Redis)
answers; the last sweep is recent (beat and a worker are both alive); no integrator-wide breaker
stops this process (the integrator's, or the one for its own key: another key's typo is not ours);
no webhook or notification event has waited undelivered longer than
``HALO_RECONCILER_OUTBOX_ALERT_SECONDS``; Halo answers with the configured key. A container health check runs it; the exit code says healthy or not, each line
says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from reconciler.adapters import outbox_rows
from reconciler.adapters.coordination import keys
from reconciler.adapters.store import SqlStore
from reconciler.core.breaker import BreakerState
from reconciler.core.errors import CoordinationError
from reconciler.core.halo_errors import HaloError, HaloUnauthorized, HaloUnavailable
from worker import db, wiring
from worker.coordination import get_redis
from worker.config import Settings

NIL_GUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def check_database() -> Check:
    try:
        current, head = db.current_revision(), db.head_revision()
    except (SQLAlchemyError, OSError) as exc:  # each check reports its own failure; the others still run
        return Check("database", False, f"unreachable: {exc}")
    if current != head:
        return Check("database", False, f"schema at {current or 'nothing'}, this code needs {head}: "
                                        "run `halo-reconciler db upgrade`")
    return Check("database", True, f"answers, schema {head}")


def check_broker() -> Check:
    try:
        get_redis().ping()
    except CoordinationError as exc:
        return Check("broker", False, f"Redis does not answer: {exc}")
    return Check("broker", True, "Redis answers")


def check_sweep(settings: Settings, now: datetime | None = None) -> Check:
    """The last sweep's age against three intervals (and a minute of slack)."""

    now = now or datetime.now(UTC)
    allowed = 3 * settings.sweep_interval_seconds + 60
    try:
        raw = get_redis().get(keys.last_sweep())
    except CoordinationError as exc:
        return Check("sweep", False, f"cannot read the last sweep: {exc}")
    if raw is None:
        # A fresh deployment has not swept yet: not a failure, but say so.
        return Check("sweep", True, "no sweep has finished yet (beat sweeps every "
                                    f"{settings.sweep_interval_seconds:.0f} s)")
    try:
        finished = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return Check("sweep", False, "the last sweep's time does not parse")
    age = (now - finished).total_seconds()
    if age > allowed:
        return Check("sweep", False, f"the last sweep finished {age:.0f} s ago (more than {allowed:.0f} s): "
                                     "is beat running, and a worker consuming the sweep queue?")
    return Check("sweep", True, f"last sweep {age:.0f} s ago")


def next_probe(state: BreakerState, now: datetime) -> str:
    """When an open breaker probes next, read now from its live state (the ticket's detail states only
    the schedule: it is written once, and this time moves after every refused probe)."""
    due = datetime.fromtimestamp(state.next_probe_at, UTC)
    wait = state.next_probe_at - now.timestamp()
    if wait <= 0:
        return (f"next probe due since {due:%Y-%m-%d %H:%M:%S} UTC (the scheduled probe task or the next "
                "automatic run makes it)")
    return f"next probe at {due:%Y-%m-%d %H:%M:%S} UTC (in {wait:.0f} s)"


def check_breaker(settings: Settings, now: datetime | None = None) -> Check:
    """Open while Halo refuses our key, IP or quota: automatic work is kept and only probes are spent."""
    now = now or datetime.now(UTC)
    try:
        states = wiring.breaker(settings).states()
    except CoordinationError as exc:
        return Check("breaker", False, f"cannot read the breaker: {exc}")
    if not states:
        return Check("breaker", True, "closed")
    parts = []
    for state in states:
        opened = datetime.fromtimestamp(state.opened_at, UTC)
        parts.append(f"{state.cause} breaker open ({state.scope}) since {opened:%Y-%m-%d %H:%M:%S} UTC, "
                     f"{state.failures} refused call(s), {next_probe(state, now)}")
    return Check("breaker", False, "; ".join(parts) + ": automatic work is kept; see the open ticket, fix the "
                 "cause, then `halo-reconciler reconcile ID --now` closes it")


def check_outbox(settings: Settings, now: datetime | None = None) -> Check:
    """Late or failed deliveries: a ticket that never reached the webhook must not look like no ticket."""
    now = now or datetime.now(UTC)
    try:
        with db.new_session() as session:
            undelivered = outbox_rows.waiting(session, targets=settings.outbox_targets)
    except SQLAlchemyError as exc:
        return Check("outbox", False, f"cannot read the outbox: {exc}")
    late = [w for w in undelivered if w.age_seconds(now) > settings.outbox_alert_seconds]
    if late:
        parts = [f"{w.target}: {w.pending + w.failed} event(s) undelivered ({w.failed} failed), the oldest for "
                 f"{w.age_seconds(now):.0f} s, last error: {w.oldest_last_error or 'none yet'}" for w in late]
        return Check("outbox", False, "; ".join(parts) + f" (more than {settings.outbox_alert_seconds} s): fix the "
                     "target, then `halo-reconciler outbox retry ID` (see `outbox list --status failed`)")
    waiting = sum(w.pending + w.failed for w in undelivered)
    return Check("outbox", True, f"{waiting} event(s) waiting, none longer than {settings.outbox_alert_seconds} s"
                 if waiting else "nothing waiting")


def check_halo(settings: Settings) -> Check:
    """One unretried call: any answer but 401 shows Halo takes the key (a 404 for the nil GUID does)."""

    guid = NIL_GUID
    try:
        with db.new_session() as session:
            guid = SqlStore(session).first_guid() or NIL_GUID
    except SQLAlchemyError:  # the database check reports that; Halo can still be asked about the nil GUID
        pass
    try:
        with wiring.build_halo_client(settings, max_attempts=1, timeout=min(settings.halo_timeout_seconds, 10)) as client:
            client.get_site(guid)
    except HaloUnauthorized:
        return Check("halo", False, "Halo refused the subscription key (401): check HALO_SUBSCRIPTION_KEY and "
                                    "HALO_BASE_URL (stage and production keys differ)")
    except HaloUnavailable as exc:
        return Check("halo", False, f"Halo did not answer: {exc.message}")
    except HaloError as exc:
        return Check("halo", True, f"answers with the key ({exc.status} for a site status)")
    return Check("halo", True, "answers with the key")


def run_checks(settings: Settings, *, halo: bool = True) -> list[Check]:
    checks = [check_database(), check_broker(), check_sweep(settings), check_breaker(settings),
              check_outbox(settings)]
    if halo:
        checks.append(check_halo(settings))
    return checks
