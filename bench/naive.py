"""The naive worker the storm benchmark compares against: one task and one Find sites call per
report, nothing coalesced (the same workflow underneath, so only the coalescing differs).

Run with ``celery -A bench.naive worker``.
"""

from __future__ import annotations

from dataclasses import replace

from celery import Celery

from worker.celery_app import broker_url

app = Celery("halo_naive", broker=broker_url(), set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, task_acks_late=True,
                worker_prefetch_multiplier=1, task_default_queue="naive", worker_hijack_root_logger=False)


@app.task(name="bench.naive_reconcile")
def naive_reconcile(guid: str) -> None:
    from models import Trigger
    from reconciler.adapters.store import SqlStore
    from reconciler.usecases.reconcile import reconcile
    from tests.utils.runs import PortRuns
    from worker import db, wiring

    with db.new_session() as session:
        practice = SqlStore(session).practice_by_guid(guid)
        practice_id = practice.id if practice else None
    if practice_id is not None:
        # No work queue: the baseline runs every report, one Find sites call each.
        unqueued = PortRuns(queue=None, coordination=wiring.coordination())
        reconcile(practice_id, trigger=Trigger.FORBIDDEN, deps=replace(wiring.reconcile_deps(), runs=unqueued))
