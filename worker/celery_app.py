"""The Celery application, configured for this workload. Each setting says why.

Process set-up (logging, metrics, clients after fork) is ``worker.process``'s, connected when
``celery -A worker`` loads the app. The broker is ``BROKER_URL`` (Redis) or, with none set, the embedded Valkey server that
``worker.coordination`` starts on demand in the data directory: one code path either way.
"""

from __future__ import annotations

import sys
import time

import redis
from celery import Celery
from celery.signals import before_task_publish, task_rejected, task_unknown
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Exchange, Queue
from kombu import pools as kombu_pools
from kombu.transport import redis as kombu_redis

from worker import publishing
from worker.config import get_settings
from worker.coordination import SOCKET, ensure_embedded_server
from worker.messages import count_refused

QUEUES = ("events", "reconcile", "sweep", "deliver")
SENT_AT_HEADER = "halo_sent_at"


def broker_url() -> str:
    """The broker's URL, computed without side effects: the embedded server starts on first use
    (``worker_init``, ``beat_init`` and every publisher call ``ensure_broker`` first)."""
    settings = get_settings()
    if settings.broker_url:
        return settings.broker_url
    return f"redis+socket://{settings.data_dir / SOCKET}"


def ensure_broker() -> None:
    """Start the embedded broker if this process uses it and it is not running yet."""
    settings = get_settings()
    if settings.broker_url is None:
        ensure_embedded_server(settings)


def create_app() -> Celery:
    settings = get_settings()
    app = Celery("halo_reconciler", include=["tasks.reconcile", "tasks.deliver", "tasks.sweep", "tasks.events",
                                               "tasks.retention", "tasks.probe"])
    app.conf.update(
        broker_url=broker_url(),
        # JSON only: whoever can write to the broker must not be able to run code (no pickle).
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Results are never read (the database holds the outcome); storing them costs Redis memory.
        task_ignore_result=True,
        # Acknowledge after the task ran, and re-queue it if the worker process dies mid-task:
        # reconciliations are idempotent (level-triggered, version-checked), so a redelivery is safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: a reconciliation waits on Halo for up to a minute, and a
        # prefetched message would sit behind it while another process idles.
        worker_prefetch_multiplier=1,
        # A task past its soft limit gets SoftTimeLimitExceeded and is retried later by the sweep; the
        # hard limit kills a process stuck beyond that. Halo calls time out well before either.
        task_soft_time_limit=settings.soft_time_limit_seconds,
        task_time_limit=settings.task_time_limit_seconds,
        # Redis redelivers an unacknowledged message after the visibility timeout (a worker host died
        # holding it); configuration keeps it longer than the longest task, or a slow task would run
        # twice at once. kombu looks for such messages every interval (default: every 100 s).
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            "unacked_restore_interval": max(1, min(10, settings.broker_visibility_timeout_seconds // 10)),
            "unacked_restore_throttle": 1,
            # A broker that accepts and never answers (half-open after a failover) must not hold a
            # publisher or a consumer forever: every connection's connect and reads are bounded.
            **publishing.WORKER.transport_options(),
        },
        # A publish retries a bounded number of times (worker.publishing.WORKER says how long that takes;
        # the queued marks' pending lifetime is derived from it).
        task_publish_retry=True,
        task_publish_retry_policy=publishing.WORKER.retry_policy(),
        broker_connection_timeout=publishing.WORKER.connect_timeout,
        # Separate queues so a storm of 403 events cannot starve sweeps or ticket delivery.
        # Each queue its own direct exchange and routing key: with one shared default exchange and key,
        # a message published to the exchange would be copied into every queue.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="reconcile",
        task_create_missing_queues=False,
        task_routes={
            "halo.reconcile_practice": {"queue": "reconcile"},
            "halo.deliver_outbox": {"queue": "deliver"},
            "halo.sweep": {"queue": "sweep"},
            "halo.apply_retention": {"queue": "sweep"},
            # The breaker's probe: scheduled by the worker itself, never behind a storm of kept reports.
            "halo.probe_breaker": {"queue": "sweep"},  # housekeeping beside the sweep, never behind a storm
            "halo.lookup_forbidden": {"queue": "events"},
            "halo.note_forbidden_persists": {"queue": "events"},
            "halo.note_integrator_forbidden": {"queue": "events"},
        },
        beat_schedule={
            # The outbox is also drained right after each change; this catches what a crash left.
            "deliver-outbox": {"task": "halo.deliver_outbox", "schedule": 15.0},
            # Stale practices and due retries; the task itself takes a lock, so two beats are safe.
            "sweep": {"task": "halo.sweep", "schedule": settings.sweep_interval_seconds},
            # Folds old routine verifications in short batches; two beats are safe (each row folds once).
            "retention": {"task": "halo.apply_retention", "schedule": settings.retention_interval_seconds},
        },
        broker_connection_retry_on_startup=True,
        # Counts messages whose body does not decode (see ``Consumer``).
        worker_consumer="worker.celery_app:Consumer",
        # Our logs are structlog lines on the real stderr; Celery must neither replace the root
        # logger nor route stderr back into logging (the lines would loop and vanish).
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Task events for Flower and `celery events` (HALO_RECONCILER_TASK_EVENTS; `worker --events`
        # turns them on for one worker; `celery -A worker control enable_events` for running ones).
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        timezone="UTC",
        enable_utc=True,
    )
    return app


app = create_app()


def follow_settings() -> None:
    """Point the app at the broker the current settings name (tests change settings in one process)."""
    url = broker_url()
    if app.conf.broker_url != url:
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None  # holds the old connection pool otherwise
        # kombu keeps producer pools in a process-wide registry keyed by URL: going back to a URL
        # used before would otherwise hand out a pool over connections closed here.
        kombu_pools.reset()
        app.conf.broker_url = url
        publishing.reset()


class Consumer(CeleryConsumer):
    """Celery's consumer, counting what it drops: a body that does not decode, or that is not JSON."""

    def on_decode_error(self, message, exc):  # noqa: ANN001
        count_refused("undecodable", content_type=str(message.content_type)[:100], error=type(exc).__name__)
        super().on_decode_error(message, exc)


def _released_transport_is_a_connection_error() -> None:
    """A channel of a broker connection that is gone says so with a connection error.

    When the broker connection is lost, Celery (5.7) ``collect()``s the connection, which releases its
    transport, then closes it; with messages in hand and a ``BRPOP`` waiting, the Redis channel was not
    closed by the first step, so the second restores the unacknowledged messages through a transport
    that is no longer there; and a task that was running finishes after the reconnection and
    acknowledges through that same dead channel. Both built a Redis client from ``conninfo`` None:
    ``AttributeError``, which Celery does not expect there, so the worker stopped with "Unrecoverable
    error" at every Valkey restart (found by the chaos soak, ``python3 dev.py soak``). As a connection
    error, Celery handles both as the lost connection they are: the messages stay in the broker's
    unacked set and are handed out again after the visibility timeout (runs are idempotent).
    """
    original = kombu_redis.Channel._connparams
    if getattr(original, "halo_guarded", False):
        return

    def _connparams(self, asynchronous=False):  # noqa: ANN001, ANN202 (kombu's signature)
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection of this channel is closed")
        return original(self, asynchronous)

    _connparams.halo_guarded = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams


_released_transport_is_a_connection_error()


@task_unknown.connect
def _count_unknown_task(name: object = None, **_: object) -> None:
    count_refused("unregistered_task", task=str(name)[:200])


@task_rejected.connect
def _count_rejected_message(exc: object = None, **_: object) -> None:
    count_refused("invalid_message", error=type(exc).__name__ if exc is not None else "unknown_format")


@before_task_publish.connect
def _stamp_sent_at(headers: dict | None = None, **_: object) -> None:
    """Every task carries when it was sent, so the metrics can say how old a queue's oldest message is."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())
