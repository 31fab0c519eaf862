"""Blocking work (Redis, the database) off the event loop, within a time bound.

``starlette.concurrency.run_in_threadpool`` is ``anyio.to_thread.run_sync`` without
``abandon_on_cancel``: a timeout around it would wait for the thread anyway. Here the caller stops
waiting when its deadline passes (the thread finishes on its own; the work it does is bounded too:
the hook by ``HALO_RECONCILER_REPORT_TIMEOUT_SECONDS``, queries by the database's own timeouts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

T = TypeVar("T")


async def run_blocking(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``func`` in the thread pool; a surrounding ``anyio.fail_after`` cancels the wait."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs), abandon_on_cancel=True)
