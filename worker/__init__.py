"""The halo-reconciler process: ``celery -A worker worker`` finds the Celery app here.

The app is created on first access, not at import, so importing ``worker.hooks`` from an
application or running the command line does not pay for Celery.
"""


def __getattr__(name: str):
    if name in ("app", "celery"):
        # Celery on first access only: an application importing worker.hooks does not pay for it.
        from worker import process  # noqa: F401  (the worker's and beat's signal handlers)
        from worker.celery_app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
