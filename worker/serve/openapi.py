"""The HTTP API's OpenAPI 3.1 document, written by hand: it is the contract, not a by-product.

Served at ``/v1/openapi.json`` (behind the token, like everything under ``/v1/``); a unit test
validates it with openapi-spec-validator and checks the app's answers against it with openapi-core.
"""

from __future__ import annotations

from typing import Any

from models import PracticeState
from reconciler.core.vocabulary import Action
from worker.serve.body import MAX_BODY_BYTES

API_VERSION = "1.1.0"  # the halo-reconciler-client release that speaks this API carries the same version

_GUID = {"type": "string", "format": "uuid",
         "description": "A Halo GUID, a UUID (any case; braces or urn:uuid: are accepted too).",
         "examples": ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]}
_CANONICAL_GUID = {"type": "string", "format": "uuid", "description": "A Halo GUID, lower case and hyphenated."}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORISED = {
    **_json(_ERROR, "No valid bearer token (or none is configured: HALO_RECONCILER_API_TOKENS)."),
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "halo-reconciler HTTP API",
            "version": API_VERSION,
            "description": (
                "Report Halo 403s from an application in any language, and ask which GUID to use now. "
                "Every request under /v1/ carries `Authorization: Bearer TOKEN`, a token listed in "
                "HALO_RECONCILER_API_TOKENS."
            ),
        },
        "paths": {
            "/v1/reports": {
                "post": {
                    "operationId": "reportForbidden",
                    "summary": "Report that Halo answered 403 for a GUID (the Python hook's path).",
                    "description": (
                        f"At most {MAX_BODY_BYTES} bytes of JSON. A well-formed GUID no practice has is taken and "
                        "counted as unknown. The message is cut to 4 KiB before it is stored. With `wait_seconds`, "
                        "the answer (200) comes once the reconciliation the report leads to, or folds into, has "
                        "finished, or when that many seconds have passed (`settled` says which)."
                    ),
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}},
                    },
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Waited"},
                                     "With `wait_seconds`: the report was taken, and what its run decided."),
                        "202": _json({"$ref": "#/components/schemas/Taken"}, "The report was taken."),
                        "400": _json(_ERROR, "Not a JSON object with a string `guid`, a malformed GUID, or a "
                                             "`wait_seconds` outside (0, 10]."),
                        "401": _UNAUTHORISED,
                        "413": _json(_ERROR, f"The body is larger than {MAX_BODY_BYTES} bytes."),
                        "503": _json({"$ref": "#/components/schemas/NotTaken"},
                                     "The coordination store did not answer in time: retry later."),
                    },
                }
            },
            "/v1/guids/{guid}": {
                "get": {
                    "operationId": "currentGuid",
                    "summary": "The GUID to use now for a practice known by this GUID or any it had.",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "guid", "in": "path", "required": True, "schema": _GUID}],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/GuidAnswer"}, "A practice has or had this GUID."),
                        "400": _json(_ERROR, "Not a GUID."),
                        "401": _UNAUTHORISED,
                        "404": _json(_ERROR, "No practice has or had this GUID."),
                        "503": _json(_ERROR, "The database did not answer in time: retry later."),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {"description": "The OpenAPI document.",
                                "content": {"application/json": {"schema": {"type": "object"}}}},
                        "401": _UNAUTHORISED,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "The process is up (no token).",
                    "security": [],
                    "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "Up.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "The database and the broker answer (no token, no Halo call).",
                    "security": [],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Ready"}, "Ready."),
                        "503": _json({"$ref": "#/components/schemas/Ready"}, "Not ready: `checks` says which failed."),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Report": {
                    "type": "object",
                    "required": ["guid"],
                    "properties": {
                        "guid": _GUID,
                        "message": {"type": ["string", "null"], "description": "Halo's error message, if known."},
                        "wait_seconds": {
                            "type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 10,
                            "description": "Wait at most this long for the reconciliation the report leads to.",
                        },
                    },
                },
                "Waited": {
                    "type": "object",
                    "required": ["taken", "settled", "current_guid", "action"],
                    "properties": {
                        "taken": {"const": True},
                        "settled": {"type": "boolean",
                                    "description": "The run finished (true) or the wait ended first (false)."},
                        "current_guid": {**_CANONICAL_GUID, "type": ["string", "null"],
                                         "description": "The GUID to use now for the reported one; null if unknown."},
                        "action": {"type": ["string", "null"], "enum": [*(a.value for a in Action), None],
                                   "description": "The finished reconciliation's action."},
                    },
                },
                "Taken": {
                    "type": "object", "required": ["taken"],
                    "properties": {"taken": {"const": True}},
                },
                "NotTaken": {
                    "type": "object", "required": ["taken", "error"],
                    "properties": {"taken": {"const": False}, "error": {"type": "string"}},
                },
                "GuidAnswer": {
                    "type": "object",
                    "required": ["guid", "current_guid", "practice_id", "state"],
                    "properties": {
                        "guid": {**_CANONICAL_GUID, "description": "The GUID asked about, canonical."},
                        "current_guid": {**_CANONICAL_GUID, "description": "The GUID to use now."},
                        "practice_id": {"type": "integer"},
                        "state": {"type": "string", "enum": [state.value for state in PracticeState]},
                    },
                },
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
                "Ready": {
                    "type": "object",
                    "required": ["ready", "checks"],
                    "properties": {
                        "ready": {"type": "boolean"},
                        "checks": {
                            "type": "object",
                            "properties": {"database": {"type": "boolean"}, "broker": {"type": "boolean"}},
                        },
                    },
                },
            },
        },
    }
