"""What each Celery process does at start and stop: the signal handlers of a worker or beat.

``celery -A worker`` loads this beside the app (``worker/__init__.py``). The app itself stays free
of the clients (``worker.wiring``), so an application that only publishes never builds them.
"""

from __future__ import annotations

import sys

import structlog
from celery.signals import beat_init, worker_init, worker_process_init, worker_process_shutdown
from sqlalchemy.exc import SQLAlchemyError

from reconciler.adapters.metrics import StateCollector, start_metrics_server
from reconciler.core.errors import CoordinationUnavailable
from worker import db, wiring
from worker.celery_app import QUEUES, SENT_AT_HEADER, ensure_broker
from worker.config import get_settings
from worker.coordination import get_redis
from worker.logging import configure_logging

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
        with db.get_engine().connect():
            pass
        get_redis().ping()
        wiring.halo_client()
    except (SQLAlchemyError, CoordinationUnavailable) as exc:  # down at start-up: tasks retry, the worker starts
        log.warning("worker_warm_up_failed", error=str(exc))


@worker_init.connect
def _init_main_process(**_: object) -> None:
    settings = get_settings()
    configure_logging(settings, stream=sys.__stderr__)
    if settings.metrics_port:
        # The metrics server's thread answers scrapes while the pool forks (and re-forks a child that
        # died). Its first scrape would import the database driver; a child forked while that import
        # holds Python's import lock waits for it forever. So everything a scrape needs is imported
        # here, before the thread exists: one collection, in this thread.
        _warm_up()
        state = StateCollector(redis=get_redis, session=db.new_session, queues=QUEUES, sent_at_header=SENT_AT_HEADER)
        list(state.collect())
        # Before the pool forks: children inherit the multiprocess set-up.
        start_metrics_server(settings.metrics_port, state=state,
                             multiprocess_dir=settings.data_dir / "metrics" / str(settings.metrics_port))


@worker_process_shutdown.connect
def _close_process(**_: object) -> None:
    wiring.close_halo_client()
