"""Values of the work queue's promise (client-go's workqueue), shared by its adapter and its callers."""

from __future__ import annotations

from dataclasses import dataclass

ANY_GUID = "*"  # a queued mark that names no GUID (sweeps, manual runs): any run answers it


@dataclass(frozen=True)
class Claim:
    """The right to run one reconciliation of a practice (or, if not ``granted``, how long to wait)."""

    practice_id: int
    token: str
    granted: bool
    retry_in_ms: int = 0
    taken_over: bool = False  # the lock was this same token's: an earlier delivery died holding it
