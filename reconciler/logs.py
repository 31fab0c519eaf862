"""structlog's logger, with structlog imported when the first line is logged.

Modules on the command line's listing path write ``log = get_logger()`` where they would write
``log = structlog.get_logger()``. It is the same logger: structlog's own lazy proxy, which reads the
configuration on every call, so ``configure_logging``, ``capture_logs`` and the event names are
unchanged. Only the import moves: structlog (which imports rich and its tracebacks, ~50 ms) is
imported on the first call, and the listings, which never log, never pay for it (start-up time:
docs/BENCHMARKS.md, "cli"). A command that defers its logging configuration registers it with
``configure_on_first_use``; it runs just before that first line.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

_pending_configuration: Callable[[], None] | None = None


def configure_on_first_use(configure: Callable[[], None] | None) -> None:
    """Run ``configure`` once, before the first line any lazy logger writes in this process (None:
    forget a deferred configuration; ``configure_logging`` does, as a configuration done now wins)."""
    global _pending_configuration
    _pending_configuration = configure


def _structlog() -> ModuleType:
    global _pending_configuration
    import structlog  # the one lazy import of structlog: on the first line logged (start-up time, see above)

    configure, _pending_configuration = _pending_configuration, None
    if configure is not None:
        configure()
    return structlog


class LazyLogger:
    """Every attribute is structlog's ``get_logger()``'s, resolved on first use."""

    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: Any = None

    def __getattr__(self, name: str) -> Any:
        logger = self._logger
        if logger is None:
            logger = self._logger = _structlog().get_logger()
        return getattr(logger, name)


def get_logger() -> LazyLogger:
    return LazyLogger()


def bind_contextvars(**values: Any) -> None:
    """``structlog.contextvars.bind_contextvars``, importing structlog only when it is called."""
    _structlog().contextvars.bind_contextvars(**values)


def unbind_contextvars(*keys: str) -> None:
    """``structlog.contextvars.unbind_contextvars``, importing structlog only when it is called."""
    _structlog().contextvars.unbind_contextvars(*keys)
