"""A publisher that dies between the mark and the publish: run as a real process, killed with SIGKILL.

    python -m tests.reliability.publisher_child report GUID    # the application hook
    python -m tests.reliability.publisher_child sweep          # the sweep's enqueue

The script (or ``WorkQueue.add``) runs for real against the coordination store; the publish that
should follow prints ``PUBLISHING`` and then hangs until the test kills the process.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

READY = "PUBLISHING"


def _hang(*_: object) -> None:
    print(READY, flush=True)
    time.sleep(600)  # the test SIGKILLs us long before this


def main(argv: list[str]) -> int:
    from worker import reporting, wiring

    if argv[0] == "report":
        reporting.publisher = lambda timeout: _hang  # the hook's publish, after the report script ran
        from worker.hooks import report_forbidden

        report_forbidden(argv[1], "Forbidden")
        return 0
    from reconciler.adapters.store import SqlStore
    from reconciler.usecases.sweep import enqueue_planned, plan
    from worker import db

    with db.new_session() as session:
        enqueue_planned(plan(SqlStore(session), now=datetime.now(UTC), older_than=timedelta(0)),
                        queue=wiring.work_queue(), publish=_hang)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
