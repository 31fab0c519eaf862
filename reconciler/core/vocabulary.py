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


class TicketStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
