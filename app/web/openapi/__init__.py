"""``GET /openapi.json``: every endpoint of the worker's HTTP API as one OpenAPI document.

Contract:
- The document is OpenAPI **3.0.3**, the version schemathesis and most generators
  support most completely; it is plain Python data built once per process from one
  module per area (``registry``, ``config``, ``catalog``, ``produce``, ``ops``), each
  holding its paths and its component schemas, on the shared pieces of ``base``.
- Every route of :func:`onepipe.app.web.server.build_web_app` is documented, and every
  documented operation is a route: ``tests/app/test_openapi.py`` compares the two (HEAD
  aside) and validates the document; ``tests/app/test_openapi_fuzz.py`` runs schemathesis
  against a live worker, so a reply the document does not allow fails the suite.
- Errors are the one shape of ``#/components/schemas/Error`` (``error_code``,
  ``message``, ``code``, plus ``reasons``, ``errors`` or ``field`` on some).
- Security comes from the token gate's table (:func:`onepipe.app.auth.rights.right_for`):
  probes are open, reads take an optional bearer token, publishing and registry or
  catalog writes need one; each protected operation lists the gate's 401/403/429.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from aiohttp import web

from onepipe.app.auth.rights import right_for
from onepipe.app.web.openapi import catalog, config, ops, produce, registry
from onepipe.app.web.openapi.base import secure

__all__ = ["add_openapi_routes", "openapi_document"]

_AREAS = (registry, config, catalog, produce, ops)

_ERROR_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error_code", "message", "code"],
        "properties": {
            "error_code": {"type": "integer",
                           "description": "Confluent's code (e.g. 40401), else the status."},
            "message": {"type": "string",
                        "description": "What was wrong, what was received, what to do."},
            "code": {"type": "string", "description": "Stable machine-readable code."},
            "reasons": {"type": "array", "items": {"type": "string"},
                        "description": "Why a schema is incompatible (409)."},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"},
                       "description": "Per record and field (422 `invalid_records`)."},
            "field": {"type": "string", "nullable": True,
                      "description": "The metadata value at fault (422 `invalid_metadata`)."},
        },
    },
    "FieldError": {
        "type": "object",
        "required": ["index", "path", "reason"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "path": {"type": "string", "description": "Dotted field path; empty: the record."},
            "reason": {"type": "string"},
        },
    },
}

_TAGS = [
    {"name": "registry", "description": "Confluent Schema Registry API: subjects and schemas."},
    {"name": "config", "description": "Compatibility levels, modes and checks."},
    {"name": "catalog", "description": "Topic metadata: key, order, checks, sinks."},
    {"name": "produce", "description": "Schema-enforcing produce endpoint."},
    {"name": "kafka-rest-v3", "description": "A Confluent Kafka REST v3 subset."},
    {"name": "operations", "description": "Probes, status, metrics, verify, sinks."},
]


@cache
def openapi_document() -> dict[str, Any]:
    """The document (built once; callers must not mutate it)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = dict(_ERROR_SCHEMAS)
    for area in _AREAS:
        for path, item in area.PATHS.items():
            if path in paths:
                raise AssertionError(f"{path} is described by two modules")
            paths[path] = {method: secure(op, right_for(method.upper(), path))
                           for method, op in item.items()}
        schemas.update(area.SCHEMAS)
    return {
        "openapi": "3.0.3",
        "info": {"title": "onepipe worker API", "version": "1",
                 "description": "Registry, topic catalog, produce API and operations "
                                "views served by every onepipe worker."},
        "tags": _TAGS,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "`Authorization: Bearer <token>`, when tokens are configured."}},
        },
    }


@cache
def _document_bytes() -> bytes:
    return orjson.dumps(openapi_document())


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type="application/json")


def add_openapi_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
