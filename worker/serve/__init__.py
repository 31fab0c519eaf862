"""``halo-reconciler serve``: one Starlette application, served by uvicorn.

::

    /healthz, /readyz        probes, no token             (probes.py)
    /v1/...                  the HTTP API, bearer tokens  (api.py over auth.py, body.py, openapi.py)
    /                        reserved for the operator console (``create_app(settings, console=...)``)

Every request passes through ``observe.py``: one ``api_request_handled`` line, and a JSON answer
instead of a traceback for anything unexpected.
"""

from worker.serve.app import create_app, run_server

__all__ = ["create_app", "run_server"]
