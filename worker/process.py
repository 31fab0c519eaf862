"""What each Celery process does at start and stop: the signal handlers of a worker or beat.

``celery -A worker`` loads this beside the app (``worker/__init__.py``). The app itself stays free
of the clients (``worker.wiring``), so an application that only publishes never builds them.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from datetime import UTC, datetime

from worker.config import Settings, get_settings
from worker.logging import configure_logging, wants_json, without_rich

# A worker writing JSON lines imports its stack without rich (worker.logging.without_rich): the
# parent would hold it, and every child map it, for nothing.
with without_rich(wants_json(get_settings(), sys.__stderr__)):
    import structlog
    from celery import bootsteps
    from celery.signals import (
        beat_init,
        worker_before_create_process,
        worker_init,
        worker_process_init,
        worker_process_shutdown,
        worker_shutdown,
    )
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import configure_mappers

    from reconciler.adapters.metrics import StateCollector, start_metrics_server
    from reconciler.core.errors import CoordinationUnavailable, UnknownPractice
    from reconciler.usecases import probing
    from reconciler.usecases.lost import LostMessageWatch
    from worker import db, wiring
    from worker.celery_app import QUEUES, SENT_AT_HEADER, app, ensure_broker
    from worker.coordination import get_redis

log = structlog.get_logger()


@worker_init.connect
@beat_init.connect
def _start_broker(**_: object) -> None:
    ensure_broker()


@worker_process_init.connect
def _init_process(**_: object) -> None:
    """Per-process set-up after fork: logging; clients are built lazily on first use."""
    configure_logging(get_settings(), stream=sys.__stderr__)
    _warm_up()


def _warm_up() -> None:
    """Pay for imports and connections before the first task, not during a storm's first second."""
    try:
        # The unit of work checks the schema (once per process: the version row, the migration files)
        # and the read compiles into this engine's statement cache (~35 ms the first time), both paid
        # here rather than by the first task. No practice has id 0, so nothing is read or held.
        with wiring.unit_of_work() as store:
            with contextlib.suppress(UnknownPractice):
                store.practice_for_run(0, switches_since=datetime.now(UTC))
        get_redis().ping()
        wiring.halo_client()
    except (SQLAlchemyError, CoordinationUnavailable, db.SchemaOutdated) as exc:
        # Down or behind at start-up: tasks retry (or report the schema), the worker starts.
        log.warning("worker_warm_up_failed", error=str(exc))


def _import_before_fork(settings: Settings) -> None:
    """Import, in the parent, every module a child's warm-up and first reconciliation would import.

    Pages the parent holds when the pool forks are shared by all its children until written; a module
    each child imported for itself would cost every child its own copy (docs/BENCHMARKS.md, "memory").
    Nothing here connects: an engine without a connection (its driver), an httpx client closed unused
    (its transport), the notifier only when notification URLs are set (Apprise, ~15 MB). No socket
    crosses the fork; each child builds its own clients (``wiring``, ``db.get_engine`` per pid).
    """
    try:
        db.get_engine()
    except SQLAlchemyError as exc:  # a URL the driver refuses: each child reports it on its first task
        log.warning("worker_import_before_fork_failed", error=str(exc))
    # SQLAlchemy configures every mapper on the first query (~30 ms of CPU): once here, shared by
    # every child, instead of once in each child's first reconciliation.
    configure_mappers()
    wiring.build_halo_client(settings).close()
    if settings.notify_urls:
        wiring.notifier(settings)


@worker_before_create_process.connect
def _freeze_before_fork(**_: object) -> None:
    """Move everything the parent allocated out of the collector's sight before each fork.

    A child's collections would otherwise walk (and write the headers of) every object it inherited,
    copying nearly every page of the parent's heap into the child: the bulk of a child's private
    memory. Frozen objects are never collected, so garbage is collected first (the parent's garbage
    would be frozen for good otherwise); Celery's pool collects again right after this signal.
    """
    gc.collect()
    gc.freeze()


def threads_of(worker: object) -> int:
    """How many tasks the worker runs at once in its own process: its concurrency under Celery's
    threads pool, 0 under prefork (each child runs one)."""
    pool = getattr(worker, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return int(getattr(worker, "concurrency", 0) or 0) if "thread" in str(name) else 0


@worker_init.connect
def _init_main_process(sender: object = None, **_: object) -> None:
    settings = get_settings()
    configure_logging(settings, stream=sys.__stderr__)
    threads = threads_of(sender)
    if threads:
        # One process runs every task: a database connection per thread, and no worker_process_init
        # (no child is forked), so the warm-up happens here.
        db.reserve_connections(threads)
    _import_before_fork(settings)
    if threads and not settings.metrics_port:
        _warm_up()
    if settings.metrics_port:
        # The metrics server's thread answers scrapes while the pool forks (and re-forks a child that
        # died). Its first scrape would import the database driver; a child forked while that import
        # holds Python's import lock waits for it forever. So everything a scrape needs is imported
        # here, before the thread exists: one collection, in this thread.
        _warm_up()
        state = StateCollector(redis=get_redis, session=db.new_session, queues=QUEUES, sent_at_header=SENT_AT_HEADER,
                               outbox_targets=settings.outbox_targets)
        list(state.collect())
        # Before the pool forks: children inherit the multiprocess set-up.
        start_metrics_server(settings.metrics_port, state=state,
                             multiprocess_dir=settings.data_dir / "metrics" / str(settings.metrics_port))


@worker_process_shutdown.connect
@worker_shutdown.connect
def _close_process(**_: object) -> None:
    wiring.close_halo_client()


def probe_watch_seconds(settings: Settings) -> float:
    """How often a worker looks for an open breaker with no probe on its way: half the probe interval,
    between 1 s and 30 s (a lost probe is then scheduled again at most that long after its mark expired)."""
    return min(30.0, max(1.0, settings.breaker_probe_seconds / 2))


class ProbeWatch(bootsteps.StartStopStep):
    """The worker's watch. The breaker probes by itself even when its probe message was lost (a worker
    killed holding it, a broker restarted without it): the consumer's timer looks every
    ``probe_watch_seconds`` and schedules a probe where a breaker is open and none is on its way
    (``_watch_probe``). One cheap read when the breaker is closed; the schedule mark keeps it to one probe
    across workers. On the same tick, a queued mark whose message the broker no longer holds is queued
    again (``reconciler.usecases.lost``)."""

    def __init__(self, parent: object, **kwargs: object) -> None:
        self.tref = None
        super().__init__(parent, **kwargs)

    def start(self, parent) -> None:  # noqa: ANN001  (Celery's consumer)
        self.tref = parent.timer.call_repeatedly(probe_watch_seconds(get_settings()), _watch, priority=10)

    def stop(self, parent) -> None:  # noqa: ANN001
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


_lost = LostMessageWatch(broker_queue="reconcile")


def _watch() -> None:
    """One tick of the worker's watch: the breaker's probe, and queued marks whose message was lost."""
    _watch_probe()
    try:
        _lost.look(wiring.work_queue(), wiring.requeue())
    except CoordinationUnavailable as exc:  # the next tick looks again
        log.warning("queued_mark_watch_failed", error=str(exc))


def _watch_probe() -> float | None:
    """One look: a breaker open with no probe on its way (its message lost) gets one, for a kept practice."""
    breaker = wiring.breaker()
    publish = wiring.probe_publisher()
    try:
        kept = breaker.kept_practice()
        if kept is None:  # no work waits: the next kept report schedules the probe itself
            return None
        return probing.schedule_probe(breaker, lambda countdown: publish(kept, countdown), now=time.time())
    except CoordinationUnavailable as exc:  # the next tick looks again
        log.warning("breaker_probe_watch_failed", error=str(exc))
        return None


app.steps["consumer"].add(ProbeWatch)
