"""structlog, configured once per process: JSON in production, readable on a terminal.

Modules only call ``structlog.get_logger()`` (or ``reconciler.logs.get_logger()``, the same logger with
structlog imported on the first line); ``configure_logging`` is called by the CLI and by the worker's
process set-up, and imports structlog (without rich when the lines are JSON: ``without_rich``).
``redact_secrets`` runs last before rendering, so the subscription key
cannot reach a log line whatever a caller binds.
"""

from __future__ import annotations

import os

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reconciler import logs
from worker.config import LogFormat, Settings

REDACTED = "[redacted]"
_secrets: tuple[str, ...] = ()


def register_secret(secret: str | None) -> None:
    """Add a value that must never be written (the key; a webhook secret)."""
    global _secrets
    if secret and len(secret) >= 4 and secret not in _secrets:
        _secrets = (*_secrets, secret)


# Any ``scheme://user:password@`` in a line loses its password, registered or not (a URL built by a
# library from parts, a password shorter than ``register_secret`` accepts).
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#@:]*:)[^/\s?#@]+@")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        if "@" in value:
            value = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{REDACTED}@", value)
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    if isinstance(value, BaseException):
        return _scrub(repr(value))
    return value


def redact_secrets(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: blank every registered secret wherever it appears in the event."""
    return {key: _scrub(value) for key, value in event_dict.items()}


@contextmanager
def without_rich(enabled: bool = True) -> Iterator[None]:
    """Modules imported in this block find rich not installed (when ``enabled`` and rich is not
    imported yet).

    rich is installed for the command line's tables, and libraries import it whenever it is there:
    structlog for its console renderer's tracebacks, httpx for its own command line. A process that
    writes JSON lines uses neither, and rich with its dependencies is ~2-3 MB resident in a worker's
    parent that every child maps (docs/BENCHMARKS.md, "memory"), ~50 ms of a command's start. Those
    libraries fall back as they do where rich is absent; afterwards rich is importable again.
    """
    if not enabled or "rich" in sys.modules:
        yield
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` raise ImportError
    try:
        yield
    finally:
        del sys.modules["rich"]


def wants_json(settings: Settings, stream: Any) -> bool:
    """JSON lines, or a readable console (the decision ``configure_logging`` makes for ``stream``)."""
    if settings.log_format is LogFormat.JSON:
        return True
    if settings.log_format is LogFormat.CONSOLE:
        return False
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Configure structlog (and the stdlib root logger, for Celery's own lines) for this process."""
    stream = stream if stream is not None else sys.stderr
    logs.configure_on_first_use(None)  # a configuration done now replaces one a command deferred
    register_secret(settings.subscription_key)
    for password in settings.url_secrets:  # the database's and broker's, inside their URLs
        register_secret(password)
    if settings.webhook_secret:
        register_secret(settings.webhook_secret.get_secret_value())
    for url in settings.notify_url_values:  # Apprise URLs hold tokens and passwords
        register_secret(url)
    level = logging.getLevelNamesMapping()[settings.log_level]
    json_lines = wants_json(settings, stream)
    with without_rich(json_lines):
        import structlog  # here, to import it without rich for JSON lines (see without_rich)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json_lines:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=stream, format="%(levelname)s %(name)s %(message)s", force=True)
    # httpx logs every request URL at INFO; the URL is safe but the volume is not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Alembic narrates every migration step at INFO; the command line says what matters itself.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def _reinit_write_locks_after_fork() -> None:
    # structlog's PrintLogger shares one lock per output file (structlog._output.WRITE_LOCKS). A prefork
    # child inherits it in whatever state the fork found it; if a parent thread (the metrics server)
    # was writing a line at that instant, the child's first log line would wait forever. CPython's
    # logging module resets its own locks the same way (``_at_fork_reinit``).
    output = sys.modules.get("structlog._output")  # not imported: no lock to reset
    for lock in list(getattr(output, "WRITE_LOCKS", {}).values()):
        lock._at_fork_reinit()  # type: ignore[attr-defined]


os.register_at_fork(after_in_child=_reinit_write_locks_after_fork)
