"""A run finished: one pub/sub message (``reconciler.core.work.RunFinished``), for the reports that
wait on it (``POST /v1/reports`` with ``wait_seconds``).

Every run's last round trip publishes it (``RedisRuns.finish``, in ``lua/run_finish.lua``);
``serve`` holds one subscription per process (``worker.serve.waits``) and hands each message to the
reports waiting on the GUID the run began with. Nothing polls the database.

A message is lost when no server listens at that moment, which is harmless: a waiting report then
answers ``settled: false`` when its wait ends, and the reconciliation itself is unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.client import translate
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.work import RunFinished


class FinishedRuns:
    """One subscription to the finished runs, on an event loop (``serve``'s): ``subscribe`` once, then
    iterate ``runs()`` until it ends (the subscription was lost) and ``close``. redis-py's asyncio
    errors are translated here, as ``CoordinationClient`` translates the blocking client's."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self._timeout = timeout
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, health_check_interval=30)
        self._pubsub = self._client.pubsub()

    async def subscribe(self) -> None:
        """Subscribe and wait for the confirmation: from its return on, no finished run is missed.
        Raises ``CoordinationUnavailable`` when the store does not answer within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._pubsub.subscribe(keys.runs_finished())
                while (await self._pubsub.get_message(timeout=self._timeout)) is None:
                    pass
        except RedisError as exc:
            raise translate(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise CoordinationUnavailable(f"no subscription to finished runs ({type(exc).__name__})") from exc

    async def runs(self) -> AsyncIterator[RunFinished]:
        """Every finished run announced from now on; ends by raising ``CoordinationError`` when the
        subscription is lost."""
        try:
            async for message in self._pubsub.listen():
                if message.get("type") != "message":
                    continue
                finished = RunFinished.parse(message["data"])
                if finished is not None:
                    yield finished
        except RedisError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            raise CoordinationUnavailable(f"the subscription to finished runs was lost ({type(exc).__name__})") from exc

    async def close(self) -> None:
        await self._pubsub.aclose()
        await self._client.aclose()
