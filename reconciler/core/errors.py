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
    CoordinationError            the coordination store (Redis) refused a command: a bug, not retried
    └── CoordinationUnavailable  it cannot be reached, or refuses writes for now: retry later
        └── CoordinationTimeout  it did not answer in time: a write may have landed

The coordination errors are redis-py's, translated in one place
(``reconciler.adapters.coordination.client``, which holds the map).

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


class CoordinationError(Exception):
    """The coordination store refused a command in a way no retry mends (a wrong type, a script error)."""


class CoordinationUnavailable(CoordinationError):
    """The coordination store (Redis) cannot be reached, or the embedded server cannot be started,
    or it refuses writes for now (a replica after a failover, out of memory)."""


class CoordinationTimeout(CoordinationUnavailable):
    """The coordination store did not answer in time: what the command wrote may or may not be there."""


class Busy(OperationFailed):
    """Another reconciliation holds the practice's claim; ``retry_in`` seconds is when it may be free."""

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class Conflict(Exception):
    """Another writer changed what we read (a practice's version, a unique ticket, a flag) first."""
