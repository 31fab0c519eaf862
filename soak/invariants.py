"""The soak's invariants, checked against what happened (pure: facts in, violations out).

``facts`` reads the facts from the database, the simulator and the soak's own log of what it did;
each ``check_*`` below is one invariant of issue 24 and returns the violations it found, each naming
the practice it is about (None for the integrator or the machine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

INTEGRATOR_WIDE = frozenset({"ip_not_allowed", "quota_exceeded", "unauthorized"})


@dataclass(frozen=True)
class PracticeFact:
    id: int
    pms_type: str
    pms_id: str
    halo_guid: str
    practice_name: str
    state: str
    proposed_guid: str | None
    last_verdict: str | None


@dataclass(frozen=True)
class RunFact:
    id: int
    practice_id: int
    trigger: str
    started_at: float  # epoch seconds
    finished_at: float | None
    verdict: str
    action: str
    old_guid: str | None
    new_guid: str | None
    halo_calls: int
    actor: str | None = None


@dataclass(frozen=True)
class TicketFact:
    id: int
    practice_id: int | None
    kind: str
    reason: str
    status: str
    opened_at: float
    resolved_at: float | None


@dataclass(frozen=True)
class OutboxFact:
    id: int
    event_type: str
    delivered: bool
    failed: bool
    last_error: str | None


@dataclass(frozen=True)
class SiteFact:
    """A site as the simulator holds it at the end: Halo's truth."""
    guid: str
    pms_type: str
    pms_id: str
    status: str
    authoritative: bool | None
    practice_name: str
    paired: bool


@dataclass(frozen=True)
class ReportFact:
    at: float
    guid: str
    practice_id: int
    channel: str  # "hook" | "http"
    taken: bool


@dataclass(frozen=True)
class HistoryFact:
    practice_id: int
    guid: str
    valid_from: float
    valid_until: float | None


@dataclass
class Facts:
    practices: list[PracticeFact]
    runs: list[RunFact]
    tickets: list[TicketFact]
    outbox: list[OutboxFact]
    sites: list[SiteFact]
    reports: list[ReportFact]
    history: list[HistoryFact]
    # When each site was active, from the soak's own log of the world: guid -> [(from, until or None)].
    active_windows: dict[str, list[tuple[float, float | None]]]
    # Halo calls the simulator served since onboarding, by (endpoint, PMS ID or GUID).
    calls: dict[tuple[str, str], int]
    bursts: dict[int, int]  # report bursts that named each practice (settling reports included)
    max_attempts: int  # HALO_RECONCILER_HALO_MAX_ATTEMPTS: calls one Halo request may cost
    unrecorded_runs: int  # runs that may have called Halo and died before recording (SIGKILLs, restarts)
    guard_paused: bool
    leftovers: list[str] = field(default_factory=list)  # processes or servers still running at the end
    crashes: list[str] = field(default_factory=list)  # processes that exited without being stopped
    watched: int = 0  # process groups the soak started (and watched, and stopped)
    # What was still wrong when settling passed its bound (practice or None, what and why).
    late: list[tuple[int | None, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    invariant: str
    practice_id: int | None
    what: str


def normalise(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def _truth(facts: Facts) -> dict[tuple[str, str], list[SiteFact]]:
    by_practice: dict[tuple[str, str], list[SiteFact]] = defaultdict(list)
    for site in facts.sites:
        by_practice[(site.pms_type, site.pms_id)].append(site)
    return by_practice


def _open(ticket: TicketFact) -> bool:
    return ticket.status != "resolved"


def check_on_authoritative_guid(facts: Facts) -> list[Violation]:
    """Every practice is on Halo's authoritative active GUID, or held or ticketed for a stated reason
    that is still true."""
    found: list[Violation] = []
    truth = _truth(facts)
    open_tickets = defaultdict(set)
    for t in facts.tickets:
        if _open(t):
            open_tickets[t.practice_id].add(t.reason)
    for p in facts.practices:
        sites = truth.get((p.pms_type, p.pms_id), [])
        active = [s for s in sites if s.status == "active" and s.authoritative is not False]
        reasons = open_tickets[p.id]
        if not active:
            if any(s.status == "initialising" for s in sites):
                if p.last_verdict != "initialising" and p.halo_guid not in {s.guid for s in sites if s.status == "initialising"}:
                    found.append(Violation("on_authoritative_guid", p.id,
                                           f"Halo's site is initialising but the practice's last verdict is "
                                           f"{p.last_verdict} (state {p.state})"))
            elif "not_found" not in reasons:
                found.append(Violation("on_authoritative_guid", p.id,
                                       f"no active site at Halo, yet no open not_found ticket (state {p.state}, "
                                       f"last verdict {p.last_verdict})"))
            continue
        if len(active) > 1:
            if "ambiguous" not in reasons:
                found.append(Violation("on_authoritative_guid", p.id, "several active sites, no ambiguous ticket"))
            continue
        site = active[0]
        same_name = normalise(site.practice_name) == normalise(p.practice_name)
        if p.halo_guid == site.guid and same_name:
            if p.state == "held" and not (facts.guard_paused and "mass_change" in {t.reason for t in facts.tickets if _open(t)}):
                found.append(Violation("on_authoritative_guid", p.id,
                                       f"on Halo's GUID but still held (proposed {p.proposed_guid})"))
            continue
        if not same_name:
            if p.state == "held" and p.proposed_guid == site.guid and "business_change" in reasons:
                continue
            found.append(Violation("on_authoritative_guid", p.id,
                                   f"Halo shows new owners {site.practice_name!r} on {site.guid}, but the practice is "
                                   f"{p.state} on {p.halo_guid} (proposed {p.proposed_guid}, open tickets "
                                   f"{sorted(reasons) or 'none'})"))
            continue
        if p.state == "held" and p.proposed_guid == site.guid and (
                "pairing_required" in reasons or (facts.guard_paused and "mass_change" in reasons)):
            continue
        found.append(Violation("on_authoritative_guid", p.id,
                               f"on {p.halo_guid}, Halo's authoritative active GUID is {site.guid} "
                               f"(state {p.state}, last verdict {p.last_verdict}, open tickets "
                               f"{sorted(reasons) or 'none'})"))
    return found


def check_integrator_tickets_still_true(facts: Facts) -> list[Violation]:
    """Integrator-wide tickets (key, IP, quota) are open only while Halo still refuses: after the
    faults have stopped and the system settled, none is."""
    return [Violation("ticketed_reason_still_true", None,
                      f"ticket #{t.id} {t.kind}/{t.reason} still {t.status} after Halo stopped refusing")
            for t in facts.tickets if _open(t) and t.reason in INTEGRATOR_WIDE]


def check_switches(facts: Facts) -> list[Violation]:
    """No GUID was switched to twice in a row, and no practice was switched to a site that was not
    active and paired at the time."""
    found: list[Violation] = []
    paired = {s.guid: s.paired for s in facts.sites}
    switches = sorted((r for r in facts.runs if r.action == "switched"), key=lambda r: (r.started_at, r.id))
    last: dict[int, str] = {}
    for r in switches:
        if r.new_guid is None:
            found.append(Violation("switch_once_to_live_site", r.practice_id, f"run #{r.id} switched to no GUID"))
            continue
        if r.old_guid == r.new_guid or last.get(r.practice_id) == r.new_guid:
            found.append(Violation("switch_once_to_live_site", r.practice_id,
                                   f"run #{r.id} switched to {r.new_guid} again"))
        last[r.practice_id] = r.new_guid
        finished = r.finished_at if r.finished_at is not None else r.started_at
        windows = facts.active_windows.get(r.new_guid)
        if windows is not None and not any(start <= finished + 0.5 and (until is None or until >= r.started_at - 0.5)
                                           for start, until in windows):
            found.append(Violation("switch_once_to_live_site", r.practice_id,
                                   f"run #{r.id} switched to {r.new_guid}, which was not active at the time"))
        if not paired.get(r.new_guid, False):
            found.append(Violation("switch_once_to_live_site", r.practice_id,
                                   f"run #{r.id} switched to {r.new_guid}, which Halo has no pairing for"))
    return found


def check_tickets_once(facts: Facts) -> list[Violation]:
    """No ticket is open twice for the same (practice, kind, reason), at the same time."""
    found: list[Violation] = []
    groups: dict[tuple[int | None, str, str], list[TicketFact]] = defaultdict(list)
    for t in facts.tickets:
        groups[(t.practice_id, t.kind, t.reason)].append(t)
    for (practice_id, kind, reason), tickets in groups.items():
        tickets.sort(key=lambda t: t.opened_at)
        for earlier, later in zip(tickets, tickets[1:]):
            if earlier.resolved_at is None or earlier.resolved_at > later.opened_at:
                found.append(Violation("ticket_open_once", practice_id,
                                       f"tickets #{earlier.id} and #{later.id} both open for {kind}/{reason}"))
    return found


def check_reports_answered(facts: Facts) -> list[Violation]:
    """Every report that was taken was answered: a run finished after it (the run it led to or folded
    into), or its GUID had already been replaced (a stale GUID costs no Halo call)."""
    found: list[Violation] = []
    finished: dict[int, list[float]] = defaultdict(list)
    for r in facts.runs:
        if r.finished_at is not None and r.actor in (None, "worker"):
            finished[r.practice_id].append(r.finished_at)
    left: dict[tuple[int, str], list[float]] = defaultdict(list)
    for h in facts.history:
        if h.valid_until is not None:
            left[(h.practice_id, h.guid)].append(h.valid_until)
    unanswered: dict[int, list[ReportFact]] = defaultdict(list)
    for report in facts.reports:
        if not report.taken:
            continue
        if any(until <= report.at for until in left.get((report.practice_id, report.guid), [])):
            continue
        if any(done >= report.at for done in finished.get(report.practice_id, [])):
            continue
        unanswered[report.practice_id].append(report)
    for practice_id, reports in unanswered.items():
        first = min(r.at for r in reports)
        found.append(Violation("report_answered", practice_id,
                               f"{len(reports)} taken report(s) with no run after them (first at {_clock(first)}, "
                               f"via {', '.join(sorted({r.channel for r in reports}))})"))
    return found


def check_outbox(facts: Facts) -> list[Violation]:
    """Every outbox event was delivered or is listed as failed."""
    return [Violation("outbox_delivered_or_failed", None,
                      f"event #{e.id} {e.event_type} neither delivered nor failed (last error {e.last_error})")
            for e in facts.outbox if not e.delivered and not e.failed]


def check_halo_calls(facts: Facts) -> list[Violation]:
    """Halo calls per practice within the coalescing bound: the Find sites calls naming a practice
    are at most one per audited run of it (each Halo request retried at most ``max_attempts`` times),
    plus the runs a SIGKILL or restart cut short; and its report-triggered runs are at most two per
    burst of reports (the run, and one re-check for a GUID Halo had just confirmed)."""
    found: list[Violation] = []
    runs_of: dict[int, list[RunFact]] = defaultdict(list)
    for r in facts.runs:
        runs_of[r.practice_id].append(r)
    for p in facts.practices:
        runs = runs_of[p.id]
        calls = facts.calls.get(("find_sites", p.pms_id), 0)
        bound = facts.max_attempts * (len(runs) + facts.unrecorded_runs)
        if calls > bound:
            found.append(Violation("halo_calls_bounded", p.id,
                                   f"{calls} Find sites calls for {len(runs)} audited runs (bound {bound})"))
        reported = sum(r.trigger == "forbidden" for r in runs)
        bursts = facts.bursts.get(p.id, 0)
        if reported > 2 * bursts:
            found.append(Violation("halo_calls_bounded", p.id,
                                   f"{reported} report-triggered runs for {bursts} bursts of reports (bound {2 * bursts})"))
    return found


def check_settled_in_time(facts: Facts) -> list[Violation]:
    """Nothing is stranded: once the faults stop, every practice is right and no work is left within
    the longest wait the settings allow (probe, backoff, re-check), a sweep and a report."""
    return [Violation("settled_in_time", pid, what) for pid, what in facts.late]


def check_processes_survive(facts: Facts) -> list[Violation]:
    """No worker, beat or ``serve`` exits by itself: each fault is survived, not escaped by dying."""
    return [Violation("processes_survive", None, what) for what in facts.crashes]


def check_nothing_left(facts: Facts) -> list[Violation]:
    """No process or server the soak started is left running."""
    return [Violation("nothing_left_running", None, what) for what in facts.leftovers]


INVARIANTS: tuple[tuple[str, Callable[[Facts], list[Violation]]], ...] = (
    ("on_authoritative_guid", check_on_authoritative_guid),
    ("ticketed_reason_still_true", check_integrator_tickets_still_true),
    ("switch_once_to_live_site", check_switches),
    ("ticket_open_once", check_tickets_once),
    ("report_answered", check_reports_answered),
    ("outbox_delivered_or_failed", check_outbox),
    ("halo_calls_bounded", check_halo_calls),
    ("settled_in_time", check_settled_in_time),
    ("processes_survive", check_processes_survive),
    ("nothing_left_running", check_nothing_left),
)


def check_all(facts: Facts) -> tuple[dict[str, int], list[Violation]]:
    """Every invariant: how many things each checked, and every violation found."""
    checked = {
        "on_authoritative_guid": len(facts.practices),
        "ticketed_reason_still_true": sum(t.reason in INTEGRATOR_WIDE for t in facts.tickets),
        "switch_once_to_live_site": sum(r.action == "switched" for r in facts.runs),
        "ticket_open_once": len(facts.tickets),
        "report_answered": sum(r.taken for r in facts.reports),
        "outbox_delivered_or_failed": len(facts.outbox),
        "halo_calls_bounded": len(facts.practices),
        "settled_in_time": len(facts.practices),
        "processes_survive": facts.watched,
        "nothing_left_running": facts.watched,
    }
    violations = [v for _, check in INVARIANTS for v in check(facts)]
    return checked, violations


def _clock(epoch: float) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%H:%M:%S.%f")[:-3]
