"""The product's vocabulary, spelled exactly as PRODUCT.md spells it.

These strings are stored in the database and printed by ``--json``; other software matches on them,
so a member's value never changes once released.
"""

from enum import StrEnum


class PmsType(StrEnum):
    """PMS type as Halo's *responses* spell it (``pmsType``)."""

    BEST_PRACTICE = "BestPractice"
    ZEDMED = "Zedmed"
    D4W = "D4w"

    @property
    def query_name(self) -> str:
        """The spelling Find sites takes in ``practiceManagementName`` (note the space)."""
        return _QUERY_NAMES[self]

    @property
    def pairs_without_code(self) -> bool:
        """Zedmed and D4w sites pair without a code (the worker pairs them); Best Practice needs the
        practice's pairing code."""
        return self is not PmsType.BEST_PRACTICE

    @classmethod
    def from_query_name(cls, value: str) -> "PmsType":
        for member, name in _QUERY_NAMES.items():
            if name == value:
                return member
        raise ValueError(f"unknown practiceManagementName {value!r}")


_QUERY_NAMES = {
    PmsType.BEST_PRACTICE: "Best Practice",
    PmsType.ZEDMED: "Zedmed",
    PmsType.D4W: "D4w",
}


class SiteStatus(StrEnum):
    INITIALISING = "initialising"
    ACTIVE = "active"
    REMOVED = "removed"
    UNINSTALLED = "uninstalled"


class Availability(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNREACHABLE = "unreachable"


class PracticeState(StrEnum):
    ACTIVE = "active"
    HELD = "held"  # a change waits for a person
    BACKOFF = "backoff"  # Halo is being retried


class Verdict(StrEnum):
    UNCHANGED = "unchanged"
    INFRASTRUCTURE_CHANGE = "infrastructure_change"
    BUSINESS_CHANGE = "business_change"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    FLAPPING = "flapping"
    IP_NOT_ALLOWED = "ip_not_allowed"
    QUOTA_EXCEEDED = "quota_exceeded"
    UNAUTHORIZED = "unauthorized"
    HALO_UNAVAILABLE = "halo_unavailable"
    INITIALISING = "initialising"  # the only site that could be the practice's is still being installed


class Action(StrEnum):
    """What the act step did with a verdict."""

    MARKED_VERIFIED = "marked_verified"
    SWITCHED = "switched"
    HELD = "held"
    TICKETED = "ticketed"  # no change to the practice, a ticket opened or counted
    BACKED_OFF = "backed_off"
    NONE = "none"


class Trigger(StrEnum):
    FORBIDDEN = "forbidden"  # a 403 reported by the application
    SWEEP = "sweep"
    RETRY = "retry"
    MANUAL = "manual"


class ForbiddenCause(StrEnum):
    """Why Halo answered 403, told apart by its error message."""

    NOT_AUTHORITATIVE = "not_authoritative"
    IP_NOT_ALLOWED = "ip_not_allowed"
    QUOTA_EXCEEDED = "quota_exceeded"
    OTHER = "other"


class TicketKind(StrEnum):
    CONTACT_HALO_SUPPORT = "contact_halo_support"
    CONTACT_PRACTICE = "contact_practice"
    CHECK_INTEGRATION = "check_integration"


class TicketReason(StrEnum):
    FORBIDDEN_PERSISTS = "forbidden_persists"
    INFRASTRUCTURE_CHANGE = "infrastructure_change"
    BUSINESS_CHANGE = "business_change"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    FLAPPING = "flapping"
    IP_NOT_ALLOWED = "ip_not_allowed"
    QUOTA_EXCEEDED = "quota_exceeded"
    UNAUTHORIZED = "unauthorized"
    MASS_CHANGE = "mass_change"
    PAIRING_REQUIRED = "pairing_required"  # a Best Practice site we are not paired with: a code is needed
    UNAVAILABLE_PERSISTS = "unavailable_persists"  # Halo could not answer for one practice for too long


class TicketStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class InfrastructurePolicy(StrEnum):
    """What an infrastructure change does (``HALO_RECONCILER_INFRASTRUCTURE_POLICY``)."""

    SWITCH = "switch"
    SWITCH_AND_TICKET = "switch_and_ticket"
    HOLD = "hold"


class BusinessPolicy(StrEnum):
    """What a business change does (``HALO_RECONCILER_BUSINESS_POLICY``)."""

    HOLD = "hold"


class SkipReason(StrEnum):
    """Why an automatic reconciliation spent no Halo call (a manual one always runs)."""

    BACKOFF = "backoff"  # the practice waits for its retry time
    BREAKER_OPEN = "breaker_open"  # Halo refused the key, IP or quota: kept until a probe or operator succeeds
    BUSY = "busy"  # another run held the practice for longer than this one would wait


class ReportOutcome(StrEnum):
    """What one 403 report did, as the report script and the metrics name it."""

    PUBLISH = "publish"  # first report for the practice: a reconciliation was published
    FOLDED = "folded"  # the practice is already queued or running; this report rides along
    RECHECK = "recheck"  # Halo answered about the practice moments ago: a re-check is queued for when the delay ends
    COUNTED = "counted"  # ... and a re-check is already queued: the report only counts
    PERSISTS = "persists"  # ... and this report took the count past the persistence threshold
    STALE = "stale"  # the GUID is one a practice has left: counted, no Halo call
    UNKNOWN = "unknown"  # no practice has the GUID: counted, nothing else
    LOOKUP = "lookup"  # the GUID is not in the index: a worker looks it up in the database
    # The GUID is not in the index and its lookup is under way: this report rides along (the script
    # counts it as ``folded``, which it is; the reporter names it apart for a report that waits, since
    # no run of a practice may follow it).
    FOLDED_LOOKUP = "folded_lookup"
    INTEGRATOR_WIDE = "integrator_wide"  # Halo's message blames the IP or the quota, not the GUID
    REJECTED = "rejected"  # not a GUID at all


class DecisionAction(StrEnum):
    """A person's decision, as ``audit`` names it (PRODUCT.md, "Who decided")."""

    APPROVED = "approved"
    REJECTED = "rejected"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    PAUSED = "paused"
    RESUMED = "resumed"
    PAIRED = "paired"
    # An approval that did not switch: Halo, asked again, no longer showed the proposal (or the change
    # is still held by another rule); nothing was switched, and the detail says what Halo showed.
    APPROVE_REFUSED = "approve_refused"
    TAKEN_OVER = "taken_over"  # `reconcile --now --take-over`: a dead run's claim ended by a person
    # Operator management (the CLI's `operators ...` and the console's operators page): the operator
    # acted on is named in the detail (the audit row has no practice). Plain verbs, since the column
    # holds 16 characters and "operator_disabled" would not fit.
    OPERATOR_ADDED = "added"
    OPERATOR_REMOVED = "removed"
    OPERATOR_DISABLED = "disabled"
    OPERATOR_ENABLED = "enabled"
    OPERATOR_PASSWORD_RESET = "password_reset"
    OPERATOR_UNLOCKED = "unlocked"
    OPERATOR_ROLE_CHANGED = "role_changed"


# The decisions that change who may use the console (an admin's, or the command line's `operators ...`):
# the audit's "operator changes only" filter.
OPERATOR_CHANGES = frozenset({DecisionAction.OPERATOR_ADDED, DecisionAction.OPERATOR_REMOVED,
                              DecisionAction.OPERATOR_DISABLED, DecisionAction.OPERATOR_ENABLED,
                              DecisionAction.OPERATOR_PASSWORD_RESET, DecisionAction.OPERATOR_UNLOCKED,
                              DecisionAction.OPERATOR_ROLE_CHANGED})


class OperatorRole(StrEnum):
    """What a console operator may do: a viewer sees everything and changes nothing."""

    VIEWER = "viewer"
    APPROVER = "approver"
    ADMIN = "admin"  # an approver who also adds, disables and resets operators in the console


WORKER_ACTOR = "worker"  # the actor of every reconciliation in the audit trail
