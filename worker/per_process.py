"""One object per process, built on first use and built again after a fork: the one fork-safe singleton.

A prefork pool child must never use its parent's sockets (celery/celery#1564), nor wait on a lock some
thread of its parent held at fork time (the metrics server answering a scrape, say: that thread is
gone in the child). ``PerProcess`` holds this process's objects by key, and:

* after a fork, the child's first ``get`` builds its own; the parent's are never closed from the
  child (the sockets are the parent's too): ``forget_inherited`` lets go of what they hold without
  closing it (SQLAlchemy's ``dispose(close=False)``), and a reference is kept so no finalizer runs;
* a key that ``replaces`` another (the settings changed: a new URL) closes the old object first;
* an object that is no longer ``usable`` (a closed client, a stopped embedded server) is closed and
  built again;
* its lock is new in every child (``os.register_at_fork``), and a ``get`` that finds its object
  takes no lock at all (the hook's hot path).

Used for the Redis clients (``worker.coordination``), the engine (``worker.db``), the broker
connection pools (``worker.publishing``), the Halo client and the notifier (``worker.wiring``) and
the report hook's reporter (``worker.hooks``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

_instances: weakref.WeakSet[PerProcess] = weakref.WeakSet()


class PerProcess(Generic[K, T]):
    def __init__(self, build: Callable[[K], T] | None = None, *, close: Callable[[T], None] | None = None,
                 forget_inherited: Callable[[T], None] | None = None, usable: Callable[[T], bool] | None = None,
                 replaces: Callable[[K, K], bool] | None = None) -> None:
        """``build(key)`` makes the object (or each ``get`` hands its own); ``close`` ends one of this process's; ``replaces(old, new)``
        says whether a new key retires an old one (default: one object at a time, any new key does)."""
        self._build = build
        self._close = close
        self._forget_inherited = forget_inherited
        self._usable = usable
        self._replaces = replaces or (lambda old, new: True)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._objects: dict[K, T] = {}
        self._inherited: list[T] = []
        _instances.add(self)

    def get(self, key: K = None, build: Callable[[K], T] | None = None) -> T:  # type: ignore[assignment]
        """This process's object for ``key``; ``build``, if given, makes it instead of the constructor's
        (for what only the caller has at hand)."""
        if self._pid == os.getpid():
            found = self._objects.get(key)
            if found is not None and (self._usable is None or self._usable(found)):
                return found
        with self._lock:
            self._adopt_fork()
            found = self._objects.get(key)
            if found is not None and self._usable is not None and not self._usable(found):
                self._end(self._objects.pop(key))
                found = None
            if found is None:
                build = build or self._build
                if build is None:
                    raise TypeError("PerProcess.get: nothing to build with")
                for old in [k for k in self._objects if k != key and self._replaces(k, key)]:
                    self._end(self._objects.pop(old))
                found = self._objects[key] = build(key)
            return found

    def peek(self, key: K = None) -> T | None:  # type: ignore[assignment]
        """This process's object for ``key`` if one was built (nothing is built here)."""
        return self._objects.get(key) if self._pid == os.getpid() else None

    def put(self, value: T, key: K = None) -> None:  # type: ignore[assignment]
        """Use ``value`` as this process's object for ``key`` (tests hand in a stub)."""
        with self._lock:
            self._adopt_fork()
            self._objects[key] = value

    def reset(self) -> None:
        """Close and forget this process's objects (tests; the settings changed)."""
        with self._lock:
            self._adopt_fork()
            objects, self._objects = list(self._objects.values()), {}
            for value in objects:
                self._end(value)

    def _adopt_fork(self) -> None:
        """Under the lock: after a fork, set the parent's objects aside, unclosed."""
        pid = os.getpid()
        if self._pid == pid:
            return
        inherited, self._objects, self._pid = list(self._objects.values()), {}, pid
        for value in inherited:
            if self._forget_inherited is not None:
                self._forget_inherited(value)
        self._inherited.extend(inherited)

    def _end(self, value: T) -> None:
        if self._close is not None:
            self._close(value)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()


def _new_locks_after_fork() -> None:
    for instance in list(_instances):
        instance._new_lock()


os.register_at_fork(after_in_child=_new_locks_after_fork)
