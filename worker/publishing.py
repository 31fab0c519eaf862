"""How long a publish to the broker may take, and the application hook's bounded publisher.

A broker that accepts connections and never answers (a half-open socket after a failover, a
firewall dropping packets) must not hold a publisher longer than its bound: every connection has a
connect timeout and a read/write timeout, and a publish is retried a bounded number of times.
``PublishBound`` is that rule in one place: the Celery app's transport options and publish retry
policy come from it, and so do the queued marks' pending lifetimes (``WorkQueue``), which must
outlast the longest publish by a few seconds and no more.

This module imports no Celery at import time: the application's hook pays for it only when a report
first needs a worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.per_process import PerProcess

MARK_MARGIN_SECONDS = 5  # a pending mark outlives its publish's bound by this much


@dataclass(frozen=True)
class PublishBound:
    connect_timeout: float
    socket_timeout: float  # each read or write on the connection
    retries: int  # attempts after the first
    interval: float  # between attempts

    @property
    def seconds(self) -> float:
        """The longest a publish takes: per attempt a connect and two reads (the connection's hand-
        shake, the push), the waits between attempts, and the wait for a free pooled connection."""
        attempts = self.retries + 1
        return attempts * (self.connect_timeout + 2 * self.socket_timeout) + self.retries * self.interval \
            + self.socket_timeout

    @property
    def mark_seconds(self) -> int:
        """The pending lifetime of a queued mark set before such a publish."""
        return math.ceil(self.seconds) + MARK_MARGIN_SECONDS

    def transport_options(self) -> dict[str, float]:
        return {"socket_timeout": self.socket_timeout, "socket_connect_timeout": self.connect_timeout}

    def retry_policy(self) -> dict[str, float]:
        return {"max_retries": self.retries, "interval_start": 0, "interval_step": self.interval,
                "interval_max": self.interval}


# Workers, beat and the command line: kombu's BRPOP blocks one second at a time (its brpop_timeout),
# so a read timeout of 5 s never cuts a healthy consumer's read short, yet a dead connection is
# noticed within seconds instead of never (kombu's docs on ``socket_timeout``).
WORKER = PublishBound(connect_timeout=3.0, socket_timeout=5.0, retries=2, interval=0.5)


def hook_bound(timeout: float) -> PublishBound:
    """The application hook's publish: every wait is the report timeout, and one retry."""
    return PublishBound(connect_timeout=timeout, socket_timeout=timeout, retries=1, interval=timeout / 2)


# This process's pools of bounded broker connections, by (broker URL, bound); a new broker URL closes
# the pools of the old.
_pools: PerProcess[tuple[str, PublishBound], Any] = PerProcess(
    close=lambda pool: pool.force_close_all(), replaces=lambda old, new: old[0] != new[0])


def _pool(app: Any, bound: PublishBound) -> Any:
    """This process's pool of bounded broker connections for ``bound`` (rebuilt after a fork or when
    the broker URL changes)."""

    def build(_key: tuple[str, PublishBound]) -> Any:
        connection = app.connection_for_write(connect_timeout=bound.connect_timeout,
                                              transport_options=bound.transport_options())
        return connection.Pool(limit=8)

    return _pools.get((str(app.conf.broker_url), bound), build)


def reset() -> None:
    """Close this process's bounded connections (tests; the settings changed)."""
    _pools.reset()


def bounded_publisher(timeout: float, celery_app: Callable[[], Any]):
    """Publish a task by name (no task module imported into the application) within ``hook_bound``.
    ``celery_app`` gives the Celery app when the first publish needs it (``worker.celery_app`` uses
    this module's bounds, so it cannot be imported here)."""
    bound = hook_bound(timeout)

    def publish(name: str, args: list[Any], queue: str, **options: Any) -> None:
        app = celery_app()
        with _pool(app, bound).acquire(block=True, timeout=bound.socket_timeout) as connection:
            app.send_task(name, args=args, queue=queue, connection=connection, retry=True,
                          retry_policy=bound.retry_policy(), **options)

    return publish
