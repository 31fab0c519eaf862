"""One way to wait for state in the suite and the benchmarks: poll a predicate, fail naming what."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


class WaitTimedOut(AssertionError):
    """The predicate did not hold in time (an ``AssertionError``, so pytest reports it as a failure)."""


def wait_until(predicate: Callable[[], object], *, timeout: float = 90.0, interval: float = 0.25,
               what: str = "the condition", ignoring: tuple[type[BaseException], ...] = (),
               log: Path | None = None) -> None:
    """Return as soon as ``predicate()`` is truthy; raise ``WaitTimedOut`` after ``timeout`` seconds.

    ``ignoring``: exceptions that mean "not yet" (a server still starting refuses connections).
    ``log``: a file whose tail the failure shows (the process that did not get there).
    """
    deadline = time.monotonic() + timeout
    while True:
        last_try = time.monotonic() >= deadline
        try:
            if predicate():
                return
        except ignoring:
            pass
        if last_try:
            break
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise WaitTimedOut(f"{what} did not happen within {timeout:g}s" + (f"\n{tail}" if tail else ""))


def log_has(path: Path, text: str | bytes) -> Callable[[], bool]:
    """A predicate: ``path`` exists and contains ``text``."""
    needle = text.encode() if isinstance(text, str) else text
    return lambda: path.exists() and needle in path.read_bytes()
