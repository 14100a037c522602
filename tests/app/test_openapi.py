"""``GET /openapi.json`` tells the truth about the routes: none missing, none invented.

The document is compared with the routes of ``build_web_app`` (method and canonical path,
HEAD aside), validated as OpenAPI 3.0.3 (openapi-spec-validator, and schemathesis' own
loader, which must turn every operation into one it can test), and its path parameters
with each route's. Whether replies match it is tests/app/test_openapi_fuzz.py's work.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import aiohttp
import schemathesis
from openapi_spec_validator import validate
from schemathesis.core.result import Err

from onepipe.app.web.openapi import openapi_document
from onepipe.app.web.server import build_web_app
from tests.fixtures.openapi import METHODS, documented, routed

if TYPE_CHECKING:
    from onepipe.app.runtime import Runtime

#: Documented ahead of their routes, which other changes of issue 14 are adding. Once an
#: operation here is routed, test_pending_operations_are_not_yet_routed fails: delete it
#: from this set. When the set is empty, documented and routed must be equal.
PENDING: frozenset[tuple[str, str]] = frozenset()


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in openapi_document()["paths"].items()
            for method, op in item.items() if method in METHODS]


def test_every_route_is_documented_and_every_operation_routed(runtime: Runtime) -> None:
    routes = routed(build_web_app(runtime.context))
    doc = documented(openapi_document())
    assert routes - doc == set(), "routes missing from app/web/openapi"
    assert doc - routes - PENDING == set(), "documented operations that are no route"


def test_pending_operations_are_not_yet_routed(runtime: Runtime) -> None:
    landed = PENDING & routed(build_web_app(runtime.context))
    assert landed == set(), f"routed now: remove {sorted(landed)} from PENDING"
    assert documented(openapi_document()) >= PENDING


def test_the_document_is_valid_openapi() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.0.3"
    validate(document)  # raises with the path of the first violation
    loaded = schemathesis.openapi.from_dict(document)
    problems = [str(result.err()) for result in loaded.get_all_operations()
                if isinstance(result, Err)]
    assert problems == []
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_path_parameters_are_those_of_the_path() -> None:
    for method, path, op in operations():
        in_path = set(re.findall(r"\{(\w+)\}", path))
        declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        assert sorted(declared) == sorted(in_path), (method, path)
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")


def test_every_operation_documents_errors_in_the_shared_shape() -> None:
    for method, path, op in operations():
        replies = op["responses"]
        assert "default" not in replies, (method, path)  # would let any status pass
        assert "200" in replies, (method, path)
        for status, reply in replies.items():
            if int(status) >= 400 and reply.get("content", {}).get("application/json"):
                schema = reply["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"} or (
                    (method, path) == ("GET", "/readyz")), (method, path, status)


def test_protected_operations_name_the_bearer_scheme() -> None:
    document = openapi_document()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    for method, path, op in operations():
        if method != "GET" or path.endswith("/records"):
            # Writes and publishing: a token whenever tokens are configured.
            if (method, path) not in {("POST", "/subjects/{subject}")} and not path.startswith(
                    "/compatibility/"):
                assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
    probes = [op for _, path, op in operations() if path in ("/healthz", "/readyz")]
    assert all(op["security"] == [] for op in probes)


async def test_the_worker_serves_the_document(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == openapi_document()
