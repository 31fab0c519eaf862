"""In-process stand-ins for the unit tests."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from worker import coordination


def patch_get_redis(monkeypatch: pytest.MonkeyPatch, factory: Callable[..., object]) -> None:
    """Make ``factory`` this process's coordination client: ``worker.coordination.get_redis`` and every
    module that imported it by name (the wiring, the probes, the health check ...), so no test starts
    the embedded server by accident."""
    original = coordination.get_redis
    for module in list(sys.modules.values()):
        if getattr(module, "get_redis", None) is original:
            monkeypatch.setattr(module, "get_redis", factory)
