"""halo-reconciler's client for applications: report Halo 403s and send reads to the GUID in use now.

::

    from halo_reconciler_client import HaloTransport, Reconciler

    reconciler = Reconciler("http://reconciler.internal:8000", token="...")
    halo = httpx.Client(base_url="https://api.haloconnect.io", transport=HaloTransport(reconciler),
                        headers={"Ocp-Apim-Subscription-Key": key})

Only httpx is needed; the worker (Celery, the database, Redis) stays on its own hosts, behind
``halo-reconciler serve``'s HTTP API.
"""

from halo_reconciler_client._reconciler import Reconciler, Report
from halo_reconciler_client._transport import AsyncHaloTransport, HaloTransport

__version__ = "1.1.0"
API_VERSION = __version__  # the /v1/openapi.json `info.version` this release speaks

__all__ = ["API_VERSION", "AsyncHaloTransport", "HaloTransport", "Reconciler", "Report", "__version__"]
