"""Builds every client this process uses, once, from the settings: the one place that knows both.

Adapters take explicit parameters and never read settings; use cases take their collaborators as
arguments. This module is where the two meet. Clients are built on first use and rebuilt after a
fork (a prefork pool child never shares its parent's sockets, celery/celery#1564), and ``reset()``
drops them all (tests, and ``follow_settings`` when the environment changes).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import structlog

from reconciler.adapters.coordination.ratelimit import RateLimiter
from reconciler.adapters.halo_client import HaloClient
from reconciler.adapters.metrics import observe_halo_call
from reconciler.core.errors import CoordinationUnavailable
from worker.config import Settings, get_settings
from worker.coordination import get_redis

log = structlog.get_logger()

_lock = threading.Lock()
_halo: tuple[int, HaloClient] | None = None


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


def halo_client() -> HaloClient:
    """This process's rate-limited client, built on first use and rebuilt after a fork."""
    global _halo
    with _lock:
        if _halo is None or _halo[0] != os.getpid() or _halo[1].closed:
            _halo = (os.getpid(), build_halo_client(rate_limited=True))
        return _halo[1]


def close_halo_client() -> None:
    global _halo
    with _lock:
        if _halo is not None and _halo[0] == os.getpid():
            _halo[1].close()
        _halo = None


def _rate_limit_hook(settings: Settings):
    """Every call of every worker waits for a token from the one bucket in the coordination store."""
    state: dict[str, RateLimiter] = {}

    def acquire(endpoint: str) -> None:
        try:
            if "limiter" not in state:
                state["limiter"] = RateLimiter(get_redis(), name="halo", rate_per_second=settings.rate_limit_per_second)
            state["limiter"].acquire(timeout=None)
        except CoordinationUnavailable as exc:
            # Better one unthrottled call than no reconciliation; Halo's own 429 still bounds us.
            log.warning("rate_limiter_unavailable", endpoint=endpoint, error=str(exc))

    return acquire
