"""Every sentence a ticket says to a person: what was seen and what to do. Pure.

One function per ticket reason, so a text is written once and names the configured numbers (the
403 window, for instance) instead of assuming them.
"""

from __future__ import annotations

from datetime import datetime


def _window(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "the hour" if hours == 1 else f"{hours} hours"
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def forbidden_persists(*, reports: int, seen: str) -> str:
    return (f"{reports} 403s for the GUID in use since it was last verified, yet Halo confirms it as current. "
            f"{seen} Ask Halo support why queries are refused.")


def forbidden_persists_reported(*, threshold: int, window_seconds: int) -> str:
    return (f"{threshold} or more 403s within {_window(window_seconds)} for a GUID Halo confirms as current; "
            "ask Halo support why queries to this practice are refused.")


def infrastructure_change_held(*, seen: str, practice_id: int) -> str:
    return f"{seen} Policy holds infrastructure changes: approve or reject practice {practice_id}."


def infrastructure_change_switched(*, seen: str) -> str:
    return f"{seen} Switched automatically; this ticket records it for review."


def business_change(*, seen: str, practice_id: int) -> str:
    return (f"{seen} The practice's identity changed: confirm with the practice, then "
            f"`halo-reconciler approve {practice_id}` or `reject {practice_id}`.")


def pairing_required(*, seen: str, practice_id: int) -> str:
    return (f"{seen} Best Practice sites pair only with a code the practice generates in Bp Premier: ask the "
            "practice for a pairing code, then complete the change with "
            f"`halo-reconciler practices pair {practice_id} --pairing-code CODE` (or reject it with "
            f"`halo-reconciler reject {practice_id}`).")


def approve_overtaken(*, proposed: str, seen: str) -> str:
    return (f"Approve did not switch to {proposed}: Halo no longer shows that proposal. {seen} "
            "Review the new proposal before approving again.")


def not_found(*, seen: str) -> str:
    return f"{seen} Ask the practice whether Halo Link is still installed and its PMS ID unchanged."


def ambiguous(*, seen: str) -> str:
    return f"{seen} Ask Halo support which database is authoritative."


def flapping(*, seen: str) -> str:
    return f"{seen} The authoritative database keeps moving; ask Halo support before anything switches."


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def breaker_probes(*, probe_seconds: float, probe_max_seconds: float) -> str:
    """When the breaker probes, as a rule rather than a time. The ticket's detail is written once, when
    it opens, and goes out in its webhook and notification as it is; the breaker's next probe moves
    after every refused probe. A time written here would be wrong after the first probe, and even the
    first one is not this run's to know: another run may have tripped the breaker a moment before,
    doubling the wait. The rule, counted from the ticket's ``opened_at``, stays true; the live time is
    where it can be read when it is asked for (``health``, ``tickets list``, the console's ticket page)."""
    return (f"Automatic work is kept, and the breaker probes Halo {_duration(probe_seconds)} after it opened, "
            f"then waits twice as long after each refused probe (at most {_duration(probe_max_seconds)}); "
            "`halo-reconciler health` says when the next probe is due.")


def ip_not_allowed(*, seen: str, probes: str = "") -> str:
    return f"{seen} Ask Halo support to allow-list the worker's outbound IP address. {probes}".rstrip()


def quota_exceeded(*, seen: str, probes: str = "") -> str:
    return f"{seen} The subscription's call quota is exhausted; ask Halo support to raise it. {probes}".rstrip()


def integrator_forbidden_reported(*, ip_not_allowed: bool, message: str | None) -> str:
    what = "the caller's IP address is not allow-listed" if ip_not_allowed else "the call quota is exhausted"
    return f"Halo answers 403 because {what} ({(message or '')[:200]}); contact Halo support."


def unauthorized(*, seen: str, probes: str = "") -> str:
    return (f"{seen} Check HALO_SUBSCRIPTION_KEY and HALO_BASE_URL (stage and production keys differ); automatic "
            "reconciliations stop until a call succeeds (`halo-reconciler reconcile ID --now` tests a new key). "
            f"{probes}").rstrip()


def mass_change(*, window_seconds: int) -> str:
    return (f"More practices changed GUID within {_window(window_seconds)} than is plausible; automatic switching "
            "is paused and further changes are held. Check with Halo support, approve or reject the held practices, "
            "then run `halo-reconciler autoswitch resume`.")


def unavailable_persists(*, since: datetime, seen: str) -> str:
    return (f"Halo has not answered for this practice since {since:%Y-%m-%d %H:%M} UTC (every reconciliation "
            f"ended halo_unavailable). {seen} Ask Halo support whether the practice's server or Halo Link is up; "
            "this ticket resolves itself with the next answer.")
