"""Prometheus metrics: what the worker did (counters its pool processes write) and the state of the
system (read from Redis and the database when Prometheus scrapes).

Celery's prefork pool runs tasks in child processes, so counters use prometheus_client's
multiprocess mode: ``start_metrics_server`` (the worker's main process, before the pool forks)
points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory in the data directory, every process
writes its own file there, and a scrape sums them. Reports are counted in Redis by the report
script itself (they happen in the integrator's application, not here) and read at scrape time,
like queue depths, the last sweep and open tickets: one endpoint answers "what happened" and
"what is waiting" for the whole fleet, whichever worker is scraped.

Off unless ``HALO_RECONCILER_METRICS_PORT`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client import values as prometheus_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, func, select

from models import Practice, Ticket, TicketStatus
from models.outbox import OutboxTarget
from reconciler.adapters import outbox_rows
from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.breaker import open_breakers
from reconciler.adapters.coordination.client import CoordinationClient
from reconciler.core.errors import CoordinationError

log = structlog.get_logger()

NAMESPACE = "halo_reconciler"

RECONCILIATIONS = Counter("reconciliations", "Reconciliations recorded, by verdict and action",
                          ["verdict", "action"], namespace=NAMESPACE)
HALO_CALLS = Counter("halo_calls", "HTTP calls to Halo Cloud, by endpoint and status (or 'timeout')",
                     ["endpoint", "status"], namespace=NAMESPACE)
HALO_LATENCY = Histogram("halo_call_seconds", "Time Halo Cloud took to answer one call, by endpoint", ["endpoint"],
                         namespace=NAMESPACE, buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OUTBOX_FAILURES = Counter("outbox_delivery_failures", "Failed attempts to deliver an outbox event, by target "
                          "(webhook, notify)", ["target"], namespace=NAMESPACE)
TICKETS_OPENED = Counter("tickets_opened", "Tickets opened, by kind and reason", ["kind", "reason"],
                         namespace=NAMESPACE)


def prepare_multiprocess(default_dir: Path) -> Path:
    """Give this process tree an empty multiprocess directory (stale files would resurrect old counts)."""
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or default_dir)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    # prometheus_client chose its value class when first imported; no labelled value exists yet, so
    # switching now makes every counter this process and its forked children create file-backed.
    prometheus_values.ValueClass = prometheus_values.get_value_class()
    return path


def start_metrics_server(port: int, *, multiprocess_dir: Path, state: "StateCollector", host: str = "0.0.0.0") -> None:
    prepare_multiprocess(multiprocess_dir)
    for target in OutboxTarget:  # a counter at 0 from the start: `rate()` and the dashboard see it
        OUTBOX_FAILURES.labels(target=str(target))
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(state)
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics_serving", port=port)


def observe_reconciliation(verdict: str, action: str) -> None:
    RECONCILIATIONS.labels(verdict=verdict, action=action).inc()


def observe_halo_call(endpoint: str, status: int | str, seconds: float) -> None:
    HALO_CALLS.labels(endpoint=endpoint, status=str(status)).inc()
    HALO_LATENCY.labels(endpoint=endpoint).observe(seconds)


def observe_outbox_failure(target: str) -> None:
    OUTBOX_FAILURES.labels(target=target).inc()


def observe_ticket_opened(kind: str, reason: str) -> None:
    TICKETS_OPENED.labels(kind=kind, reason=reason).inc()


def oldest_message_age(raw: bytes | None, now: float, *, header: str) -> float | None:
    """Age in seconds of a kombu Redis message (as LINDEX returns it), or None if it has no ``header`` stamp."""
    if not raw:
        return None
    try:
        sent = float(json.loads(raw)["headers"][header])
    except (ValueError, KeyError, TypeError):
        return None
    return max(0.0, now - sent)


def _up(name: str, what: str, answered: bool) -> GaugeMetricFamily:
    up = GaugeMetricFamily(f"{NAMESPACE}_{name}_up", f"1 if {what} answered this scrape")
    up.add_metric([], 1 if answered else 0)
    return up


class StateCollector:
    """Read at scrape time: report outcomes, refused input, queues, the last sweep, open tickets."""

    def __init__(self, *, redis: Callable[[], CoordinationClient], session: Callable[[], Session], queues: Sequence[str],
                 sent_at_header: str, outbox_targets: Sequence[str] = ()) -> None:
        self.redis = redis
        self.outbox_targets = tuple(outbox_targets)
        self.session = session
        self.queues = tuple(queues)
        self.sent_at_header = sent_at_header

    def collect(self) -> Iterator[object]:
        yield from self._from_redis()
        yield from self._from_database()

    def _from_redis(self) -> Iterator[object]:
        try:
            redis = self.redis()
            pipe = redis.pipeline(transaction=False)
            pipe.hgetall(keys.report_outcomes())
            pipe.get(keys.refused_messages())
            pipe.get(keys.last_sweep())
            for queue in self.queues:
                pipe.llen(queue)
                pipe.lindex(queue, -1)  # kombu pushes on the left: the right end is the oldest
            answers = pipe.execute()
        except CoordinationError as exc:  # Redis down is itself a reading
            log.warning("metrics_redis_unavailable", error=str(exc))
            yield _up("redis", "Redis", False)
            return
        yield _up("redis", "Redis", True)
        outcomes, refused, last_sweep, *queues = answers
        reports = CounterMetricFamily(f"{NAMESPACE}_reports", "403 reports from the application, by outcome "
                                      "(publish, folded, counted, persists, stale, unknown, lookup, "
                                      "integrator_wide, rejected)", labels=["outcome"])
        for outcome, n in sorted((outcomes or {}).items()):
            reports.add_metric([outcome.decode() if isinstance(outcome, bytes) else outcome], float(n))
        yield reports
        yield CounterMetricFamily(f"{NAMESPACE}_broker_messages_refused", "Broker messages that were not ours "
                                  "(unparsed arguments, unknown tasks, undecodable bodies)", value=float(refused or 0))
        now = time.time()
        depth = GaugeMetricFamily(f"{NAMESPACE}_queue_depth", "Messages waiting per queue", labels=["queue"])
        age = GaugeMetricFamily(f"{NAMESPACE}_queue_oldest_age_seconds",
                                "Age of the oldest waiting message per queue (0 when empty)", labels=["queue"])
        for i, queue in enumerate(self.queues):
            length, oldest = queues[2 * i], queues[2 * i + 1]
            depth.add_metric([queue], float(length))
            age.add_metric([queue], oldest_message_age(oldest, now, header=self.sent_at_header) or 0.0)
        yield depth
        yield age
        since = GaugeMetricFamily(f"{NAMESPACE}_last_sweep_age_seconds",
                                  "Seconds since the last sweep finished (absent before the first)")
        if last_sweep:
            try:
                finished = datetime.fromisoformat(last_sweep.decode() if isinstance(last_sweep, bytes) else last_sweep)
                since.add_metric([], max(0.0, (datetime.now(UTC) - finished).total_seconds()))
            except ValueError:
                pass
        yield since
        yield from self._breakers(redis)

    def _breakers(self, redis: CoordinationClient) -> Iterator[object]:
        """One series per open breaker (none when all are closed), its cause and scope as labels."""
        try:
            states = open_breakers(redis)
            waiting = redis.scard(keys.breaker_waiting())
        except CoordinationError as exc:
            log.warning("metrics_redis_unavailable", error=str(exc))
            return
        gauge = GaugeMetricFamily(f"{NAMESPACE}_breaker_open", "1 per open integrator-wide breaker (unauthorized "
                                  "per key fingerprint; ip_not_allowed and quota_exceeded integrator-wide)",
                                  labels=["cause", "scope"])
        for state in states:
            gauge.add_metric([str(state.cause), state.scope], 1.0)
        yield gauge
        yield GaugeMetricFamily(f"{NAMESPACE}_breaker_kept_practices",
                                "Practices whose automatic work waits for the breaker to close", value=float(waiting))

    def _from_database(self) -> Iterator[object]:
        try:
            with self.session() as session:
                tickets = session.exec(
                    select(Ticket.kind, Ticket.reason, func.count(), func.min(Ticket.opened_at))
                    .where(Ticket.status != TicketStatus.RESOLVED).group_by(Ticket.kind, Ticket.reason)
                ).all()
                states = session.exec(select(Practice.state, func.count()).group_by(Practice.state)).all()
                undelivered = outbox_rows.waiting(session, targets=self.outbox_targets)
        except SQLAlchemyError as exc:  # the database down is itself a reading
            log.warning("metrics_database_unavailable", error=str(exc))
            yield _up("database", "the database", False)
            return
        yield _up("database", "the database", True)
        open_tickets = GaugeMetricFamily(f"{NAMESPACE}_tickets_open", "Tickets open or acknowledged, by kind and reason",
                                         labels=["kind", "reason"])
        # How long the oldest unresolved ticket of each kind and reason has waited: a held change
        # nobody decides on is an alert (deploy/prometheus/alerts.yml), a count alone is not.
        oldest = GaugeMetricFamily(f"{NAMESPACE}_ticket_oldest_open_age_seconds",
                                   "Age of the oldest open or acknowledged ticket, by kind and reason",
                                   labels=["kind", "reason"])
        now = datetime.now(UTC)
        for kind, reason, n, opened_at in tickets:
            open_tickets.add_metric([str(kind), str(reason)], float(n))
            if opened_at is not None:
                if opened_at.tzinfo is None:  # SQLite's MIN() comes back as a naive UTC timestamp
                    opened_at = opened_at.replace(tzinfo=UTC)
                oldest.add_metric([str(kind), str(reason)], max(0.0, (now - opened_at).total_seconds()))
        yield open_tickets
        yield oldest
        practices = GaugeMetricFamily(f"{NAMESPACE}_practices", "Practices by state", labels=["state"])
        for state, n in states:
            practices.add_metric([str(state)], float(n))
        yield practices
        yield from _outbox(undelivered, self.outbox_targets, now)


def _outbox(undelivered: Sequence[outbox_rows.Waiting], targets: Sequence[str], now: datetime) -> Iterator[object]:
    """Every configured target has a series (0 when nothing waits), so an alert on it is never absent."""
    pending = GaugeMetricFamily(f"{NAMESPACE}_outbox_pending", "Outbox events waiting for their next attempt, "
                                "by target", labels=["target"])
    failed = GaugeMetricFamily(f"{NAMESPACE}_outbox_failed", "Outbox events that used their last attempt, "
                               "kept until `outbox retry` sends them, by target", labels=["target"])
    oldest = GaugeMetricFamily(f"{NAMESPACE}_outbox_oldest_pending_age_seconds", "Age of the oldest outbox event "
                               "not delivered yet (pending or failed), by target (0 when none)", labels=["target"])
    seen = {w.target: w for w in undelivered}
    for target in sorted(set(targets) | set(seen)):
        w = seen.get(target)
        pending.add_metric([target], float(w.pending if w else 0))
        failed.add_metric([target], float(w.failed if w else 0))
        oldest.add_metric([target], w.age_seconds(now) if w else 0.0)
    yield pending
    yield failed
    yield oldest
