"""The parts of Halo's published OpenAPI document that this project uses, carried in its own tree.

``tests/data/halo-openapi-subset.json`` is written by ``python3 dev.py openapi`` (that is,
``tools/extract_halo_openapi.py``) from the published document; ``tests/unit/test_halo_openapi_subset.py``
checks that it is current when the published document is beside the checkout. Nothing here reads
anything outside the repository.

    from tests.utils.halo_openapi import load_halo_openapi, halo_openapi

    document = load_halo_openapi()          # the subset as a dict (cached; do not mutate it)
    halo_openapi().validate_response(request, response)   # an openapi-core OpenAPI object (cached)
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from openapi_core import OpenAPI

SUBSET_PATH = Path(__file__).resolve().parents[1] / "data" / "halo-openapi-subset.json"

# The endpoints of the Halo client, as the document spells them (path templates).
FIND_SITES = "/integrator/sites"  # GET  Find sites by PMS ID
GET_SITE = "/integrator/sites/{siteId}"  # GET  Get site status
PAIR_SITE = "/integrator/pair-site"  # POST Pair with a site
IMMEDIATE_QUERY = "/integrator/sites/{siteId}/queries/immediate"  # POST Execute immediate query
CLIENT_PATHS = {FIND_SITES: "get", GET_SITE: "get", PAIR_SITE: "post", IMMEDIATE_QUERY: "post"}
# Served by the simulator too, for integrators still on the deprecated spelling.
DEPRECATED_PAIR_SITE = "/integrator/pairSite"
SIMULATED_PATHS = {**CLIENT_PATHS, DEPRECATED_PAIR_SITE: "post"}


@lru_cache(maxsize=1)
def load_halo_openapi() -> dict:
    """The in-tree subset of Halo's OpenAPI document, parsed once per process."""
    return json.loads(SUBSET_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def halo_openapi() -> OpenAPI:
    """An openapi-core ``OpenAPI`` for the subset, built once per process (building it is not cheap)."""
    return OpenAPI.from_dict(load_halo_openapi())
