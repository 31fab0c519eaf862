"""The operator console: server-rendered pages at ``/`` of ``halo-reconciler serve``.

``routes.py`` (pages and decisions), ``auth.py`` (sessions, CSRF, throttle, trusted proxy),
``views.py`` (what the pages read), ``templates/`` (Jinja2) and ``static/`` (one stylesheet; no
script at all, so the CSP forbids every script).
"""

from worker.serve.console.routes import build_console

__all__ = ["build_console"]
