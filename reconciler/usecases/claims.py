"""A run keeps its claim alive while it runs, so the claim's lock can be short.

Before, a practice's lock lived past the task's hard time limit (about 30 minutes): a worker host that
died mid-run (main process and pool together, so nothing released it) left the practice deaf that long
(issue 24). Now the lock lives ``lock_seconds`` (a minute) and the run renews it every third of that
from a thread of its own; a dead host stops renewing and the practice is free within a minute, while a
live run, however long Halo takes, keeps it. ``reconcile --now --take-over`` is the operator's way in
before that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from reconciler import logs
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.work import Claim

log = logs.get_logger()


@contextmanager
def kept_alive(claim: Claim | None, renew: Callable[[Claim], bool] | None, *, every: float) -> Iterator[None]:
    """Renew ``claim`` every ``every`` seconds until the block ends (nothing without a granted claim or a
    ``renew``). A renewal the store refuses (the claim was taken over) stops renewing; one that fails (the
    store away) is tried again at the next tick."""
    if claim is None or not claim.granted or renew is None:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            try:
                if not renew(claim):
                    log.warning("claim_lost", practice_id=claim.practice_id)
                    return
            except CoordinationUnavailable as exc:
                log.warning("claim_renewal_failed", practice_id=claim.practice_id, error=str(exc))

    thread = threading.Thread(target=run, name=f"claim-{claim.practice_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every)


__all__ = ["kept_alive"]
