"""What happened, read from the database, the simulator (Halo's truth) and the soak's own logs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from soak.invariants import (
    Facts,
    HistoryFact,
    OutboxFact,
    PracticeFact,
    ReportFact,
    RunFact,
    SiteFact,
    TicketFact,
)

if TYPE_CHECKING:
    from soak.run import Faults, Reporter, World
    from soak.stack import SoakStack


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read(stack: SoakStack, world: World, reporter: Reporter, faults: Faults, *, pairing: bool = False) -> Facts:
    from sqlmodel import select

    from models import GuidHistory, OutboxEvent, Practice, Reconciliation, Ticket
    from models.guard import AUTOSWITCH_PAUSED, ControlFlag
    from worker import db

    with db.new_session() as session:
        practices = [PracticeFact(p.id, str(p.pms_type), p.pms_id, p.halo_guid, p.practice_name, str(p.state),
                                  p.proposed_guid, str(p.last_verdict) if p.last_verdict else None)
                     for p in session.exec(select(Practice)).all()]
        runs = [RunFact(r.id, r.practice_id, str(r.trigger), _epoch(r.started_at), _epoch(r.finished_at),
                        str(r.verdict), str(r.action), r.old_guid, r.new_guid, r.halo_calls, r.actor)
                for r in session.exec(select(Reconciliation)).all()]
        tickets = [TicketFact(t.id, t.practice_id, str(t.kind), str(t.reason), str(t.status), _epoch(t.opened_at),
                              _epoch(t.resolved_at))
                   for t in session.exec(select(Ticket)).all()]
        outbox = [OutboxFact(e.id, e.event_type, e.delivered_at is not None,
                             str(getattr(e, "status", "")) == "failed", e.last_error)
                  for e in session.exec(select(OutboxEvent)).all()]
        history = [HistoryFact(h.practice_id, h.guid, _epoch(h.valid_from), _epoch(h.valid_until))
                   for h in session.exec(select(GuidHistory)).all()]
        flag = session.get(ControlFlag, AUTOSWITCH_PAUSED)
    sites = []
    for site in stack.sim.sites():
        guid = site["id"]
        paired = stack.sim.is_paired(guid) if pairing else True
        sites.append(SiteFact(guid, site["pmsType"], site["practiceManagementSiteId"], site["status"],
                              site.get("authoritative"), site["practiceMetadata"]["practiceName"], paired))
    calls = {(c["endpoint"], c["key"]): c["count"] for c in stack.sim.calls()["calls"] if c["key"] is not None}
    return Facts(
        practices=practices, runs=runs, tickets=tickets, outbox=outbox, sites=sites,
        reports=[ReportFact(at, guid, pid, channel, taken) for at, guid, pid, channel, taken in list(reporter.log)],
        history=history,
        active_windows={guid: [(a, b) for a, b in spans] for guid, spans in world.windows.items()},
        calls=calls, bursts=dict(reporter.bursts),
        max_attempts=int(stack.env["HALO_RECONCILER_HALO_MAX_ATTEMPTS"]),
        unrecorded_runs=faults.unrecorded, guard_paused=bool(flag and flag.enabled),
    )


def trails(facts: Facts, *, last: int = 10) -> dict[int, list[str]]:
    """Each practice's audit trail, oldest first (its last ``last`` runs and every ticket), for the table."""
    out: dict[int, list[str]] = {}
    for p in facts.practices:
        lines = []
        for r in sorted((r for r in facts.runs if r.practice_id == p.id), key=lambda r: r.started_at)[-last:]:
            lines.append(f"{_clock(r.started_at)} run #{r.id} {r.trigger}: {r.verdict} -> {r.action}"
                         + (f" {r.old_guid} -> {r.new_guid}" if r.action == "switched" else "")
                         + f" ({r.halo_calls} Halo calls)")
        for t in facts.tickets:
            if t.practice_id == p.id:
                lines.append(f"{_clock(t.opened_at)} ticket #{t.id} {t.kind}/{t.reason} {t.status}"
                             + (f" (resolved {_clock(t.resolved_at)})" if t.resolved_at else ""))
        out[p.id] = [f"practice {p.id} {p.pms_type} {p.pms_id}: {p.state} on {p.halo_guid}"
                     + (f", proposed {p.proposed_guid}" if p.proposed_guid else ""), *sorted(lines)]
    return out


def _clock(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch or 0, UTC).strftime("%H:%M:%S.%f")[:-3]
