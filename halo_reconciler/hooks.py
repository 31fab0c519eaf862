"""The hook under a name no application shadows::

    from halo_reconciler.hooks import report_forbidden, forbidden_event_hook, async_forbidden_event_hook

The worker's packages have generic names (``worker``, ``reconciler``), and an application laid out the
ordinary way has its own ``worker.py`` (Celery's), ``models.py`` (Flask's) or ``tasks.py`` beside it;
Python finds those first, from the application's directory. This module imports the worker's hook
from the directory its packages are installed in, then gives the application's modules their names
back: the hook keeps what it imported (the publish path's one late import is made up front), so no
later report looks a package up by a name the application owns. The hook itself imports none of the
worker's ``models`` or ``tasks``.

An application that cannot reach the worker's packages at all (a separate environment) uses
``halo-reconciler-client`` (``clients/python``) instead: it needs only httpx.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_HOME = str(Path(__file__).resolve().parents[1])  # where this distribution's packages are installed
_HOOK_PACKAGES = ("worker", "reconciler")  # the top-level packages the hook imports (no models, no tasks)
_lock = threading.Lock()


def _is_ours(module: ModuleType) -> bool:
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or ()), None)
    return where is not None and Path(where).resolve().is_relative_to(_HOME)


def _shadowing(name: str) -> bool:
    """Whether, without our home first on the path, ``import name`` would find another module."""
    path = [p or os.getcwd() for p in sys.path]  # "" is the current directory
    spec = importlib.machinery.PathFinder.find_spec(name, [p for p in path if p != _HOME])
    origin = spec.origin if spec is not None and spec.origin else None
    return origin is not None and not Path(origin).resolve().is_relative_to(_HOME)


def _load() -> ModuleType:
    with _lock:
        theirs = {name: sys.modules.pop(name) for name in _HOOK_PACKAGES
                  if name in sys.modules and not _is_ours(sys.modules[name])}
        shadowed = set(theirs) | {name for name in _HOOK_PACKAGES if _shadowing(name)}
        sys.path.insert(0, _HOME)
        try:
            hooks = importlib.import_module("worker.hooks")
            if shadowed:
                # Imported late by the publish path: imported now, while the names are ours.
                importlib.import_module("worker.celery_app")
        finally:
            sys.path.remove(_HOME)  # the first occurrence: the one inserted above
            for name in shadowed:
                # The application's module (loaded or not) takes its name back; our submodules stay
                # registered under their full names, which is how our code finds them from now on.
                if name in theirs:
                    sys.modules[name] = theirs[name]
                else:
                    sys.modules.pop(name, None)
        return hooks


_hooks = _load()
report_forbidden = _hooks.report_forbidden
forbidden_event_hook = _hooks.forbidden_event_hook
async_forbidden_event_hook = _hooks.async_forbidden_event_hook
cut_message = _hooks.cut_message


def __getattr__(name: str) -> Any:
    raise AttributeError(f"halo_reconciler.hooks has no {name!r} (current_guid: use halo-reconciler-client)")


__all__ = ["async_forbidden_event_hook", "forbidden_event_hook", "report_forbidden"]
