"""The coordination store's client: redis-py, with its errors translated at this edge.

Every command an adapter sends goes through ``CoordinationClient.execute_command`` (scripts, locks
and ``scan_iter`` too) or a pipeline's ``execute``, and both run inside ``map_redis_errors``, as
httpx runs its transport inside ``map_httpcore_exceptions``. So nothing above this package catches a
redis-py error: the shell, the use cases and the other adapters see ``reconciler.core.errors`` only.

The map, most specific first (``reconciler.core.errors`` draws the tree)::

    redis-py                                           ours
    TimeoutError                                       CoordinationTimeout      (a write may have landed)
    ConnectionError (refused, reset, LOADING, auth,    CoordinationUnavailable
      too many clients)
    ReadOnlyError (a replica after a failover), OOM,   CoordinationUnavailable  (refuses writes for now)
      MISCONF (persistence failing), BUSY (a script)
    any other RedisError (WRONGTYPE, a script error,   CoordinationError        (retrying will not help)
      a bad argument, a garbled reply)
    NoScriptError                                      itself: redis-py's ``Script`` loads the script
                                                       again on it, and so does ``Reporter._evalsha``

``WatchError`` (``TransactionConflict`` here) keeps its type too: a WATCHed key changed before EXEC,
the transaction's own answer ("another client got there first"), not a failure of the store.
``LockError`` is raised by redis-py's ``Lock`` itself, after the command, and keeps its type: it is
the lock's answer ("not yours any more"), not a failure of the store.
"""

from __future__ import annotations

from types import TracebackType

import redis as redis_lib
from redis import exceptions as redis_errors
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from reconciler.core.errors import CoordinationError, CoordinationTimeout, CoordinationUnavailable

TransactionConflict = redis_errors.WatchError
_PASSED_THROUGH = (redis_errors.NoScriptError, redis_errors.WatchError)

_MAP: tuple[tuple[type[redis_errors.RedisError], type[CoordinationError]], ...] = (
    (redis_errors.TimeoutError, CoordinationTimeout),
    (redis_errors.ConnectionError, CoordinationUnavailable),
    (redis_errors.ReadOnlyError, CoordinationUnavailable),
    (redis_errors.OutOfMemoryError, CoordinationUnavailable),
    (redis_errors.RedisError, CoordinationError),
)
# Replies redis-py leaves a plain ResponseError whose meaning is "not now" rather than "never".
_TRANSIENT_REPLIES = ("MISCONF", "BUSY ", "MASTERDOWN", "TRYAGAIN")


def translate(exc: redis_errors.RedisError) -> CoordinationError:
    """The most specific of our errors for a redis-py one (the table above)."""
    if type(exc) is redis_errors.ResponseError and str(exc).startswith(_TRANSIENT_REPLIES):
        return CoordinationUnavailable(f"the coordination store refused a write for now ({str(exc)[:40]})")
    for theirs, ours in _MAP:
        if isinstance(exc, theirs):
            if ours is CoordinationError:
                return CoordinationError(f"the coordination store refused a command ({type(exc).__name__}: "
                                         f"{str(exc)[:200]})")
            return ours(f"the coordination store did not answer ({type(exc).__name__})")
    raise AssertionError("unreachable: RedisError is the table's last row")  # pragma: no cover


class _MapRedisErrors:
    """``with map_redis_errors():`` raises ours, chained ``from`` redis-py's. A class, not a generator:
    it wraps every command of the hook's hot path, where a generator's frame would be most of the cost."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is None or not isinstance(exc, redis_errors.RedisError) or isinstance(exc, _PASSED_THROUGH):
            return False
        raise translate(exc) from exc


_MAPPER = _MapRedisErrors()


def map_redis_errors() -> _MapRedisErrors:
    return _MAPPER


def no_retry() -> Retry:
    """redis-py retries three times with backoff by default; a caller with a time bound (the
    application hook) must fail fast instead, and the callers decide what to redo."""
    return Retry(NoBackoff(), 0)


class CoordinationPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list:
        with _MAPPER:
            return super().execute(raise_on_error)


class CoordinationClient(redis_lib.Redis):
    """``redis.Redis`` whose every command raises ``reconciler.core.errors``'s coordination errors.

    Build it as redis-py's client (``CoordinationClient.from_url(url, ...)``); the shell does, once
    per process (``worker.coordination.get_redis``).
    """

    def execute_command(self, *args, **options):
        with _MAPPER:
            return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> CoordinationPipeline:
        return CoordinationPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
