"""Child processes as process groups: started in a group of their own, stopped with the whole group.

A Celery worker forks a pool, honcho starts a process per Procfile line, PostgreSQL starts its
backends: signalling only the parent would leave the rest behind. The demo, the test suite and the
benchmarks start and stop their processes through these two functions.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable


def start_in_new_group(cmd: list[str], **popen: object) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **popen)`` as the leader of a new session, so its group is its own."""
    return subprocess.Popen(cmd, start_new_session=True, **popen)  # type: ignore[call-overload]


def stop_process_group(proc: subprocess.Popen, *, timeout: float,
                       stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """Send ``stop_signal`` (SIGTERM unless told) to ``proc``'s group, wait up to ``timeout`` seconds for
    ``proc``, then SIGKILL the group.

    Returns once ``proc`` has exited; a group that is already gone is not an error. A server whose stop
    signal is another one says so: PostgreSQL's SIGTERM is its *smart* shutdown, which waits for every
    client to disconnect (an idle pooled connection holds it until the SIGKILL); SIGINT is its fast one.
    """
    stop_process_groups([proc], timeout=timeout, stop_signal=stop_signal)


def stop_process_groups(procs: Iterable[subprocess.Popen], *, timeout: float,
                        stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """``stop_process_group`` for several at once: all are signalled before any is waited for, so
    they shut down side by side and each gets the whole ``timeout``."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, stop_signal)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group has already gone
        pass
