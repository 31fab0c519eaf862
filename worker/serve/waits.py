"""Reports that wait for their run: one Redis subscription per server process, no polling.

``POST /v1/reports`` with ``wait_seconds`` registers the GUID it reports (``RunWaits.watch``) before
the report is taken, then waits on an ``asyncio.Queue``. One listener task per process holds the only
subscription (``keys.runs_finished()``, announced by ``reconciler.adapters.coordination.finished``)
and hands each finished run to the reports waiting on the GUID the run began with. A waiting report
holds no thread, no database connection and no worker process: only its queue, on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.finished import FinishedRuns
from reconciler.core.errors import CoordinationError
from reconciler.core.work import RunFinished
from worker.serve.threads import run_blocking

log = structlog.get_logger()

SUBSCRIBE_TIMEOUT_SECONDS = 2.0


class RunWaits:
    def __init__(self, redis_url: Callable[[], str]) -> None:
        self._redis_url = redis_url
        self._waiters: dict[str, set[asyncio.Queue[RunFinished]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Lock | None = None

    @property
    def waiting(self) -> int:
        return sum(len(queues) for queues in self._waiters.values())

    @contextmanager
    def watch(self, guid: str) -> Iterator[asyncio.Queue[RunFinished]]:
        """A queue that receives every run of the practice that begins with ``guid``, while in the block."""
        queue: asyncio.Queue[RunFinished] = asyncio.Queue()
        self._waiters.setdefault(guid, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._waiters.get(guid)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._waiters[guid]

    async def listening(self) -> bool:
        """Subscribe once per process (and again after the subscription was lost). False when Redis did
        not answer: the caller then cannot wait, and says ``settled: false``."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests start one per client): start again on it
            self._loop, self._listener, self._starting = loop, None, asyncio.Lock()
        if self._listener is not None and not self._listener.done():
            return True
        assert self._starting is not None
        async with self._starting:
            if self._listener is not None and not self._listener.done():
                return True
            try:
                url = await run_blocking(self._redis_url)  # may start the embedded server: off the loop
                subscription = FinishedRuns(url, timeout=SUBSCRIBE_TIMEOUT_SECONDS)
                await subscription.subscribe()  # from here on, no finished run is missed
            except CoordinationError as exc:
                log.warning("run_waits_unsubscribed", error=f"{type(exc).__name__}: {exc}")
                return False
            self._listener = loop.create_task(self._listen(subscription))
            log.info("run_waits_subscribed", channel=keys.runs_finished())
            return True

    async def _listen(self, subscription: FinishedRuns) -> None:
        try:
            async for finished in subscription.runs():
                for queue in tuple(self._waiters.get(finished.guid, ())):
                    queue.put_nowait(finished)
        except CoordinationError as exc:
            log.warning("run_waits_lost", error=f"{type(exc).__name__}: {exc}")
        finally:
            await subscription.close()
