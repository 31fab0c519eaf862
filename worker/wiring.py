"""Builds every client this process uses, once, from the settings: the one place that knows both.

Adapters take explicit parameters and never read settings; use cases take their collaborators as
arguments. This module is where the two meet. Clients are built on first use and rebuilt after a
fork (a prefork pool child never shares its parent's sockets, celery/celery#1564), and ``reset()``
drops them all (tests, and ``follow_settings`` when the environment changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from models.outbox import OutboxTarget
from reconciler.adapters import notify, outbox, outbox_rows
from reconciler.adapters.coordination.breaker import RedisBreaker
from reconciler.adapters.coordination.marks import RedisCoordination, RedisGuidIndex
from reconciler.adapters.coordination.ratelimit import RateLimiter
from reconciler.adapters.coordination.runs import RedisRuns
from reconciler.adapters.coordination.sweeps import SweepCoordinator
from reconciler.adapters.coordination.workqueue import WorkQueue
from reconciler.adapters.halo_client import HaloClient
from reconciler.adapters.metrics import observe_halo_call, observe_outbox_failure, observe_reconciliation
from reconciler.adapters.store import SqlStore
from reconciler.core.breaker import fingerprint
from reconciler.core.errors import CoordinationUnavailable, OperationFailed
from reconciler.core.policy import Policy
from reconciler.core.retention import RetentionPolicy
from reconciler.usecases.reconcile import Deps, ReconcileResult
from worker import coordination as redis_clients
from worker import db, publishing
from worker.reporting import publisher, reporter  # the report path, built where the hook can import it
from worker.config import Settings, get_settings
from worker.per_process import PerProcess

log = structlog.get_logger()



def build_halo_client(settings: Settings | None = None, *, rate_limited: bool = False, **overrides: Any) -> HaloClient:
    """A Halo client configured from the settings. ``rate_limited`` makes every attempt take a token
    from the fleet-wide bucket first (workers, sweeps, onboarding); ``overrides`` win (tests)."""
    settings = settings or get_settings()
    options: dict[str, Any] = {
        "base_url": settings.halo_base_url,
        "subscription_key": settings.subscription_key,
        "timeout": settings.halo_timeout_seconds,
        "max_attempts": settings.halo_max_attempts,
        "backoff_base": settings.halo_backoff_base_seconds,
        "retry_after_cap": settings.halo_retry_after_cap_seconds,
        "on_call": observe_halo_call,
    }
    if rate_limited:
        options["before_request"] = _rate_limit_hook(settings)
    options.update(overrides)
    return HaloClient(**options)


_halo: PerProcess[None, HaloClient] = PerProcess(
    lambda _: build_halo_client(rate_limited=True), close=HaloClient.close, usable=lambda client: not client.closed)


def halo_client() -> HaloClient:
    """This process's rate-limited client, built on first use and rebuilt after a fork."""
    return _halo.get()


def close_halo_client() -> None:
    _halo.reset()


def rate_limiter(settings: Settings | None = None) -> RateLimiter:
    """The one bucket in the coordination store every Halo call of every worker waits on: the Halo
    client's hook acquires from it, and a run's claim takes its first call's token (``runs``)."""
    settings = settings or get_settings()
    return RateLimiter(redis_clients.get_redis(), name="halo", rate_per_second=settings.rate_limit_per_second)


def _rate_limit_hook(settings: Settings):
    """Every call of every worker waits for a token from the one bucket in the coordination store."""
    state: dict[str, RateLimiter] = {}

    def acquire(endpoint: str) -> None:
        try:
            if "limiter" not in state:
                state["limiter"] = rate_limiter(settings)
            state["limiter"].acquire(timeout=None)
        except CoordinationUnavailable as exc:
            # Better one unthrottled call than no reconciliation; Halo's own 429 still bounds us.
            log.warning("rate_limiter_unavailable", endpoint=endpoint, error=str(exc))

    return acquire


# --- policy, database, coordination -------------------------------------------------------------


def policy(settings: Settings | None = None) -> Policy:
    settings = settings or get_settings()
    return Policy(
        infrastructure=settings.infrastructure_policy,
        business=settings.business_policy,
        forbidden_threshold=settings.forbidden_threshold,
        forbidden_window_seconds=settings.forbidden_window_seconds,
        flapping_window_seconds=settings.flapping_window_seconds,
        mass_change_min=settings.mass_change_min,
        mass_change_fraction=settings.mass_change_fraction,
        mass_change_window_seconds=settings.mass_change_window_seconds,
        backoff_min_seconds=settings.backoff_min_seconds,
        backoff_max_seconds=settings.backoff_max_seconds,
        unavailable_ticket_after_seconds=settings.unavailable_ticket_after_seconds,
        breaker_probe_seconds=settings.breaker_probe_seconds,
        breaker_probe_max_seconds=settings.breaker_probe_max_seconds,
    )


def retention_policy(settings: Settings | None = None) -> RetentionPolicy:
    settings = settings or get_settings()
    return RetentionPolicy(unchanged_days=settings.retention_days, batch_size=settings.retention_batch_size)


@contextmanager
def unit_of_work() -> Iterator[SqlStore]:
    """``db.unit_of_work`` as the use cases' ``Store``: nothing is written unless the caller commits."""
    with db.unit_of_work() as session:
        yield SqlStore(session)


def work_queue(settings: Settings | None = None) -> WorkQueue:
    settings = settings or get_settings()
    # No mark outlives its message (workqueue's docstring): a pending mark lives a little past the
    # workers' publish bound, a confirmed one as long as the broker may take to deliver it again.
    # The claim's lock is short and renewed by its live run (reconciler.usecases.claims): a dead worker host
    # leaves its practice for a minute, not past the task's hard limit.
    return WorkQueue(redis_clients.get_redis(), lock_seconds=settings.claim_lock_seconds,
                     pending_seconds=publishing.WORKER.mark_seconds,
                     queued_seconds=settings.broker_visibility_timeout_seconds)


def coordination(settings: Settings | None = None) -> RedisCoordination:
    settings = settings or get_settings()
    return RedisCoordination(redis_clients.get_redis(), window_seconds=settings.forbidden_window_seconds,
                             recheck_min_seconds=settings.recheck_min_seconds,
                             recheck_max_seconds=settings.recheck_max_seconds)


def breaker(settings: Settings | None = None) -> RedisBreaker:
    """The integrator-wide breaker as this process sees it: the integrator's, and its own key's."""
    settings = settings or get_settings()
    return RedisBreaker(redis_clients.get_redis(), key_fingerprint=fingerprint(settings.subscription_key),
                        base_seconds=settings.breaker_probe_seconds, cap_seconds=settings.breaker_probe_max_seconds,
                        probe_lock_seconds=settings.run_lock_seconds)


def requeue(settings: Settings | None = None):
    """Queue one automatic run of a practice kept while the breaker was open: through the work queue's
    add (a practice queued already is not doubled), then a publish; a failed publish takes the mark back."""
    settings = settings or get_settings()

    def run_again(practice_id: int) -> None:
        publish = publisher(settings.report_timeout_seconds)  # built when a breaker closes, not per run
        queue = work_queue(settings)
        nonce = queue.add(practice_id)
        if not nonce:
            return
        try:
            publish("halo.reconcile_practice", [practice_id, "retry"], "reconcile")
        except Exception as exc:  # whatever the broker client raised: the sweep finds the practice anyway
            queue.forget(practice_id, nonce)
            raise CoordinationUnavailable(f"the kept run was not published: {type(exc).__name__}") from exc
        queue.confirm(practice_id, nonce)

    return run_again


def probe_publisher(settings: Settings | None = None):
    """Publish the breaker's probe task (``halo.probe_breaker``) for a practice, with a countdown, by name:
    the worker's main process (the probe watch) publishes it without importing the task modules."""
    settings = settings or get_settings()
    publish = publisher(settings.report_timeout_seconds)

    def publish_probe(practice_id: int | None, countdown: float) -> None:
        try:
            publish("halo.probe_breaker", [practice_id] if practice_id else [], "sweep", countdown=countdown or None)
        except Exception as exc:  # whatever the broker client raised: the probe watch schedules it again
            raise CoordinationUnavailable(f"the breaker's probe was not published: {type(exc).__name__}") from exc

    return publish_probe


def guid_index() -> RedisGuidIndex:
    return RedisGuidIndex(redis_clients.get_redis())


def sweeps(settings: Settings | None = None) -> SweepCoordinator:
    settings = settings or get_settings()
    return SweepCoordinator(redis_clients.get_redis(), interval_seconds=settings.sweep_interval_seconds)


def reconcile_deps(settings: Settings | None = None) -> Deps:
    """Everything a reconciliation needs: the real clients, the configured policy, the run's coordination.

    Built once per process and shared by every run (a task's runs, a threads pool's threads): built
    again when the settings, this process's Redis client or its Halo client is another object (after
    a fork, ``reset()``s, ``get_settings.cache_clear()``). Nothing in it holds a run's state; a caller
    that needs other parts takes a ``dataclasses.replace`` of it, never changes it in place."""
    global _deps
    settings = settings or get_settings()
    redis, halo = redis_clients.get_redis(), halo_client()
    built = _deps
    if built is not None and built[0] is settings and built[1] is redis and built[2] is halo:
        return built[3]
    deps = _build_reconcile_deps(settings, halo)
    _deps = (settings, redis, halo, deps)
    return deps


_deps: tuple[Settings, Any, HaloClient, Deps] | None = None  # (what it was built from..., the deps)


def _build_reconcile_deps(settings: Settings, halo: HaloClient) -> Deps:
    breaker_ = breaker(settings)
    return Deps(
        halo=halo,
        unit_of_work=unit_of_work,
        policy=policy(settings),
        runs=runs(settings, breaker_),
        identifier_query=settings.identifier_query,
        observe=_observe,
        breaker=breaker_,
        requeue=requeue(settings),
    )


def runs(settings: Settings | None = None, breaker_: RedisBreaker | None = None) -> RedisRuns:
    """A run's coordination in three round trips: the work queue's claim, the 403 ledger and re-check
    marks, the breaker's state, and its first Halo call's rate-limit token
    (``reconciler.adapters.coordination.runs``)."""
    settings = settings or get_settings()
    return RedisRuns(work_queue(settings), coordination(settings), breaker_ or breaker(settings),
                     limiter=rate_limiter(settings))


def _observe(result: ReconcileResult) -> None:
    observe_reconciliation(str(result.verdict), str(result.action))


def deliver_outbox(settings: Settings | None = None) -> outbox.DeliveryReport | None:
    """Send pending ticket events to the configured webhook and notification URLs, if any."""
    settings = settings or get_settings()
    report: outbox.DeliveryReport | None = None
    for target in (OutboxTarget.WEBHOOK, OutboxTarget.NOTIFY):
        sent = _deliver(settings, target)
        if sent is not None:
            report = sent if report is None else report + sent
    return report


def retry_outbox_event(event_id: int, target: OutboxTarget, settings: Settings | None = None) -> outbox.DeliveryReport:
    """Send one pending or failed outbox row now (sent 1: its target took it; failed 1: refused again;
    neither: a worker holds the row this moment)."""
    settings = settings or get_settings()
    report = _deliver(settings, target, only=event_id)
    if report is None:
        raise OperationFailed(f"no {target} is configured to send outbox event {event_id} to")
    return report


def _deliver(settings: Settings, target: OutboxTarget, only: int | None = None) -> outbox.DeliveryReport | None:
    common: dict[str, Any] = {"max_attempts": settings.outbox_max_attempts, "only": only,
                              "on_failure": observe_outbox_failure}
    if target is OutboxTarget.WEBHOOK and settings.webhook_url and settings.webhook_secret:
        return outbox.deliver_pending(db.new_session, url=settings.webhook_url,
                                      secret=settings.webhook_secret.get_secret_value(),
                                      console_url=settings.public_url, **common)
    if target is OutboxTarget.NOTIFY and settings.notify_urls:
        return outbox.deliver_notifications(db.new_session, notifier=notifier(settings),
                                            public_url=settings.public_url, secrets=_secrets(settings), **common)
    return None


def drop_unheard_notifications(settings: Settings | None = None, *, dry_run: bool = False) -> int:
    """With no notification URL configured, the ``notify`` rows still waiting (written by an older
    version, or while a URL was configured that is gone now) have nobody to deliver them, and a notice
    about an old ticket sent whenever a URL appears would be noise: dropped (the retention pass calls
    this). With a URL configured, nothing is dropped: they are delivered. How many (would be) dropped."""
    settings = settings or get_settings()
    if settings.notify_urls:
        return 0
    with db.unit_of_work() as session:
        if dry_run:
            return outbox_rows.unsent_elsewhere(session, targets=settings.outbox_targets).get(OutboxTarget.NOTIFY, 0)
        dropped = outbox_rows.drop_undelivered(session, target=OutboxTarget.NOTIFY)
        session.commit()
    if dropped:
        log.info("outbox_rows_dropped", target=str(OutboxTarget.NOTIFY), rows=dropped,
                 why="no notification URL is configured")
    return dropped


_notifiers: PerProcess[tuple[str, ...], notify.AppriseNotifier] = PerProcess(notify.AppriseNotifier)


def notifier(settings: Settings | None = None) -> notify.AppriseNotifier:
    """This process's notifier for the configured URLs, built once (Apprise parses each URL)."""
    return _notifiers.get((settings or get_settings()).notify_url_values)


def _secrets(settings: Settings) -> list[str]:
    """What must never reach a notification, even quoted in a ticket's detail."""
    values = [settings.subscription_key, settings.webhook_secret.get_secret_value() if settings.webhook_secret else None]
    values += [token.get_secret_value() for token in settings.api_tokens]
    return [value for value in values if value]
