"""Every Redis key the project uses, in one place. All start with ``halo:``.

=================================  =======================  ============================================
key                                type, TTL                what
=================================  =======================  ============================================
``halo:guids``                     hash, none               GUID → ``"{practice_id}:current|stale"``
``halo:dirty:{id}``                string, see workqueue    practice queued / reported while running
``halo:processing:{id}``           string, limit + 30 s     a reconciliation of the practice runs
``halo:fresh:{id}``                string, re-check delay   Halo answered moments ago: reports re-check then
``halo:recheck:{id}``              string, delay + 60 s     a delayed re-check of the practice is queued
``halo:confirmations:{id}``        hash, 1 h                consecutive confirmations (the re-check delay)
``halo:since-verified:{id}``       counter, window          403s since that verification
``halo:persists-noted:{id}``       string, window           the persistence ticket was asked for
``halo:403:{guid}:{minute}``       counter, window + 60 s   403 reports per GUID per minute (the ledger)
``halo:unknown:{guid}``            string, 10 min           no practice has this GUID
``halo:lookup:{guid}``             string, 10 s             a database lookup of the GUID is on its way
``halo:reports``                   hash, none               403 reports by ``ReportOutcome``
``halo:broker:refused``            counter, none            broker messages that are not ours, dropped
``halo:integrator-403:{cause}``    string, 5 min            an integrator-wide 403 ticket was just noted
``halo:breaker:{scope}``           hash, 7 days             an open breaker (``integrator`` or ``key:{fp}``)
``halo:breaker-probe:{scope}``     string, lock             one probe of that breaker is on its way
``halo:breaker-waiting``           set, 7 days              practices kept while a breaker is open
``halo:breaker-probe-scheduled``   string, delay + grace    a probe task is on its way (its due time)
``halo:ratelimit:{name}``          string, ~1 s             the shared token bucket's theoretical arrival
``halo:sweep:lock``                string, 10 min           one sweep at a time, whatever the beats
``halo:sweep:last``                string, none             when the last sweep finished (ISO 8601)
``halo:sweep:slot:{n}``            string, 2 intervals      the n-th beat interval has been swept
``halo:runs-finished``             pub/sub channel          a run finished (``finished.py``): waiting reports
=================================  =======================  ============================================
"""

from __future__ import annotations

PREFIX = "halo:"


def guid_index() -> str:
    return f"{PREFIX}guids"


def dirty(practice_id: int | str) -> str:
    return f"{PREFIX}dirty:{practice_id}"


def processing(practice_id: int | str) -> str:
    return f"{PREFIX}processing:{practice_id}"


def fresh(practice_id: int | str) -> str:
    return f"{PREFIX}fresh:{practice_id}"


def recheck(practice_id: int | str) -> str:
    return f"{PREFIX}recheck:{practice_id}"


def confirmations(practice_id: int | str) -> str:
    return f"{PREFIX}confirmations:{practice_id}"


def breaker(scope: str) -> str:
    return f"{PREFIX}breaker:{scope}"


def breaker_probe(scope: str) -> str:
    return f"{PREFIX}breaker-probe:{scope}"


def breaker_waiting() -> str:
    return f"{PREFIX}breaker-waiting"


def breaker_probe_scheduled() -> str:
    return f"{PREFIX}breaker-probe-scheduled"


def since_verified(practice_id: int | str) -> str:
    return f"{PREFIX}since-verified:{practice_id}"


def persists_noted(practice_id: int | str) -> str:
    return f"{PREFIX}persists-noted:{practice_id}"


def forbidden_bucket(guid: str, minute: int) -> str:
    return f"{PREFIX}403:{guid}:{minute}"


def unknown_guid(guid: str) -> str:
    return f"{PREFIX}unknown:{guid}"


def lookup(guid: str) -> str:
    return f"{PREFIX}lookup:{guid}"


def report_outcomes() -> str:
    return f"{PREFIX}reports"


def refused_messages() -> str:
    return f"{PREFIX}broker:refused"


def integrator_forbidden(cause: str) -> str:
    return f"{PREFIX}integrator-403:{cause}"


def ratelimit(name: str) -> str:
    return f"{PREFIX}ratelimit:{name}"


def sweep_lock() -> str:
    return f"{PREFIX}sweep:lock"


def last_sweep() -> str:
    return f"{PREFIX}sweep:last"


def sweep_slot(slot: int) -> str:
    return f"{PREFIX}sweep:slot:{slot}"


def runs_finished() -> str:
    return f"{PREFIX}runs-finished"
