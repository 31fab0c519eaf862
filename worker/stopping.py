"""SIGTERM and SIGHUP stop the demo, the suite, the benchmarks and the soak as Ctrl-C does: cleanly.

Python's default for either is to die on the spot, so no ``finally`` runs and no fixture is torn down:
the servers a run started in process groups of their own (PostgreSQL, Valkey, the simulator, workers)
would outlive it. ``python3 dev.py demo|test|bench|soak|reliability`` forwards these signals to its child
(and waits for it); the child turns the first into ``KeyboardInterrupt``, whose clean-up stops
everything it started. Later ones are swallowed while that clean-up runs: ``dev.py`` may forward a
signal that the child also received itself (a signal sent to the whole process group), and a second
interrupt inside the first one's clean-up would leave servers behind. SIGKILL still ends it at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

STOPS = (signal.SIGTERM, signal.SIGHUP)


def _swallow(signum: int, frame: FrameType | None) -> None:
    """A handler, not ``SIG_IGN``: an ignored signal would be ignored by every process started from
    here on too (exec keeps it), and clean-up may start one."""


# The signal that asked for the stop, once one did. Code under test may swallow the interrupt (click
# turns KeyboardInterrupt into an exit 1, and the suite runs the command line in-process): the long
# loops check this between their steps (``check``; the suite's conftest, between tests), so the stop
# still happens, only a step later.
requested: signal.Signals | None = None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global requested
    requested = signal.Signals(signum)
    swallow_stops()
    raise KeyboardInterrupt(f"stopped by {requested.name}")


def check() -> None:
    """Raise ``KeyboardInterrupt`` again when a stop was asked for and something swallowed the first."""
    if requested is not None:
        raise KeyboardInterrupt(f"stopped by {requested.name}")


def interrupt_on_terminate() -> dict[int, Callable[..., Any] | int | None]:
    """From now on the first SIGTERM or SIGHUP raises ``KeyboardInterrupt`` in the main thread; returns
    the handlers it replaced (``restore``)."""
    return {sig: signal.signal(sig, _interrupt) for sig in STOPS}


def swallow_stops() -> None:
    """From now on SIGTERM and SIGHUP do nothing: a clean-up under way (whatever began it, Ctrl-C
    included) is not cut short by one."""
    for sig in STOPS:
        signal.signal(sig, _swallow)


def restore(previous: dict[int, Callable[..., Any] | int | None]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
