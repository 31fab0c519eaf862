"""The integrator-wide breaker: after Halo refuses the key, our IP or our quota, automatic work spends
no Halo call but one probe on exponential backoff. Pure: the coordination adapter stores the state,
the reconcile use case asks ``admission`` and reports what Halo said.

PRODUCT.md, "The integrator-wide breaker":

* ``unauthorized`` opens the breaker for the *key that was refused* only, named by a fingerprint
  (a short HMAC-SHA256 prefix of the key, never the key): a worker holding a different key is not
  stopped by an operator's typo. ``ip_not_allowed`` and ``quota_exceeded`` open it for the whole
  integrator (every key calls from the same IPs and pays from the same quota).
* While it is open, one run at a time may probe, once ``next_probe_at`` has passed; a failed probe
  doubles the wait, from ``base`` up to ``cap``. Work that arrives meanwhile is kept and runs once
  (one call per practice) when a probe or an operator's run succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from enum import StrEnum

from reconciler.core import backoff
from reconciler.core.vocabulary import TicketReason, Verdict

# The verdicts that open the breaker, and the scope each opens it in.
BREAKER_VERDICTS = (Verdict.UNAUTHORIZED, Verdict.IP_NOT_ALLOWED, Verdict.QUOTA_EXCEEDED)
INTEGRATOR_SCOPE = "integrator"
_FINGERPRINT_LABEL = b"halo-reconciler key fingerprint v1"
FINGERPRINT_LENGTH = 12


class Admission(StrEnum):
    """What the breaker lets one automatic run do."""

    ADMIT = "admit"  # closed: go on
    PROBE = "probe"  # open, and this run is its one probe
    BLOCKED = "blocked"  # open: keep the work, spend nothing


def fingerprint(key: str | None) -> str:
    """Names a subscription key without revealing it: 12 hex digits of an HMAC-SHA256 over a fixed label.

    It identifies which key was refused across processes; 48 bits cannot be turned back into a key,
    and keys are long random tokens, so a guess cannot be checked against it cheaply either."""
    if not key:
        return "nokey"
    return hmac.new(_FINGERPRINT_LABEL, key.encode(), hashlib.sha256).hexdigest()[:FINGERPRINT_LENGTH]


def scope_for(verdict: Verdict, key_fingerprint: str) -> str:
    """The breaker a verdict opens: the refused key's for a 401, the integrator's for IP and quota."""
    if verdict is Verdict.UNAUTHORIZED:
        return f"key:{key_fingerprint}"
    return INTEGRATOR_SCOPE


def scopes_of(key_fingerprint: str) -> tuple[str, str]:
    """The breakers that stop a process holding this key."""
    return INTEGRATOR_SCOPE, f"key:{key_fingerprint}"


def is_breaker_verdict(verdict: Verdict | None) -> bool:
    return verdict in BREAKER_VERDICTS


def reasons_cleared(closed: object) -> tuple[TicketReason, ...]:
    """The integrator-wide tickets a breaker's closing resolves: every reason of each scope that
    closed, not only the cause it last held (an IP refusal followed by a quota refusal leaves the
    integrator's breaker saying quota; when it closes, Halo answered, and neither stands)."""
    causes = {str(c) for c in closed}  # type: ignore[attr-defined]
    cleared: list[TicketReason] = []
    if causes & {str(Verdict.IP_NOT_ALLOWED), str(Verdict.QUOTA_EXCEEDED)}:
        cleared += [TicketReason.IP_NOT_ALLOWED, TicketReason.QUOTA_EXCEEDED]
    if str(Verdict.UNAUTHORIZED) in causes:
        cleared.append(TicketReason.UNAUTHORIZED)
    return tuple(cleared)


@dataclass(frozen=True)
class BreakerState:
    scope: str
    cause: Verdict
    opened_at: float  # epoch seconds
    failures: int  # calls refused since it opened (the first one included)
    next_probe_at: float

    def to_json(self) -> dict[str, object]:
        return {"scope": self.scope, "cause": str(self.cause), "opened_at": self.opened_at,
                "failures": self.failures, "next_probe_at": self.next_probe_at}


def probe_delay(failures: int, *, base: float, cap: float) -> float:
    """Wait before the next probe after ``failures`` refused calls: base, 2 × base, ... up to cap."""
    return backoff.exponential(max(failures - 1, 0), base=base, cap=cap)


def trip(state: BreakerState | None, *, scope: str, cause: Verdict, now: float, base: float,
         cap: float) -> BreakerState:
    """The breaker after one more refused call (the first opens it, a failed probe doubles the wait)."""
    if state is None:
        state = BreakerState(scope=scope, cause=cause, opened_at=now, failures=0, next_probe_at=now)
    failures = state.failures + 1
    return replace(state, cause=cause, failures=failures,
                   next_probe_at=now + probe_delay(failures, base=base, cap=cap))


def admission(states: list[BreakerState], *, now: float) -> Admission:
    """Before the probe lock: blocked while any breaker waits, a probe once every open one is due."""
    if not states:
        return Admission.ADMIT
    if all(now >= state.next_probe_at for state in states):
        return Admission.PROBE
    return Admission.BLOCKED


__all__ = ["BREAKER_VERDICTS", "INTEGRATOR_SCOPE", "Admission", "BreakerState", "admission", "fingerprint",
           "is_breaker_verdict", "probe_delay", "reasons_cleared", "scope_for", "scopes_of", "trip"]
