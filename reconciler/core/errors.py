"""Errors the command line and the admin API report to a person, by what the person should do.

::

    ReconcilerError
    ├── BadInput                 the request itself is wrong: exit 2, nothing written
    │   ├── UnknownPractice
    │   ├── UnknownTicket
    │   ├── AlreadyOnboarded
    │   └── InvalidState         e.g. approve on a practice that is not held
    └── OperationFailed          the request was fine but could not be carried out: exit 1
        ├── OnboardingRefused    Halo has no single authoritative active site for the PMS ID
        └── Busy                 another reconciliation holds the practice; try again shortly
    Conflict                     another writer changed the row first: re-read and decide again
    CoordinationUnavailable      Redis (or the embedded server) cannot be reached

Halo failures (``reconciler.core.halo_errors``), database failures (``worker.db``) and configuration errors
(``worker.config.ConfigError``) keep their own types; the CLI maps each to its exit code in one place.
"""


class ReconcilerError(Exception):
    pass


class BadInput(ReconcilerError):
    pass


class UnknownPractice(BadInput):
    pass


class UnknownTicket(BadInput):
    pass


class AlreadyOnboarded(BadInput):
    pass


class InvalidState(BadInput):
    pass


class OperationFailed(ReconcilerError):
    pass


class OnboardingRefused(OperationFailed):
    pass


class BreakerOpen(OperationFailed):
    """Halo refused our key, IP or quota a moment ago: automatic and bulk calls wait for the probe."""


class CoordinationUnavailable(Exception):
    """The coordination store (Redis) cannot be reached, or the embedded server cannot be started."""


class Busy(OperationFailed):
    """Another reconciliation holds the practice's claim; ``retry_in`` seconds is when it may be free."""

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class Conflict(Exception):
    """Another writer changed what we read (a practice's version, a unique ticket, a flag) first."""
