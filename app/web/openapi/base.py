"""Building blocks of the OpenAPI document: media types, the error shape, operations.

Every operation is written with :func:`operation`, so the things every view shares are
stated once: the JSON error body (``#/components/schemas/Error``, what
:func:`onepipe.app.web.http.error_middleware` and ``OnepipeError.to_json`` write), the
500 every view can answer, and the 400/413/415 of :func:`onepipe.app.web.http.read_json`
on operations that read a body. Who may call an operation is not written here but read
from the token gate's own table (:data:`onepipe.app.auth.rights.ROUTE_RIGHTS`) by
:func:`secure`, so the document and the gate cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from onepipe.app.auth.rights import Right
from onepipe.app.web.http import REGISTRY_CONTENT_TYPE

__all__ = ["JSON", "REGISTRY", "RETRY_AFTER", "body", "error", "flag", "json_reply",
           "operation", "path_param", "query", "ref", "secure"]

Schema = dict[str, Any]
JSON = "application/json"
#: Registry replies (successes) carry Confluent's media type; errors are plain JSON, as
#: the error middleware writes every error the same way.
REGISTRY = REGISTRY_CONTENT_TYPE
#: The gate's refusals, when ONEPIPE_TOKENS_FILE is set (app/auth/gate.py).
_UNAUTHORIZED = ("No bearer token, or an unknown one (`WWW-Authenticate: Bearer`); "
                 "only when tokens are configured{reads}.")
_FORBIDDEN = {Right.READ: "The token may not read.",
              Right.PUBLISH: "The token may not publish to this topic.",
              Right.ADMIN: "The operation needs an admin token."}
_RATE_LIMITED = "The token sent more requests than ONEPIPE_RATE_LIMIT_PER_SECOND allows."
#: read_json's refusals, on every operation with a request body.
_BODY_ERRORS = {
    400: "The body is empty or not JSON (`code`: `empty_body`, `malformed_json`).",
    408: "The body did not arrive within ONEPIPE_REQUEST_READ_SECONDS (`request_timeout`).",
    413: "The body exceeds ONEPIPE_MAX_REQUEST_BYTES (`code`: `payload_too_large`).",
    415: "The Content-Type is not a JSON type (`code`: `unsupported_media_type`).",
}
_INTERNAL = "A bug in onepipe (`code`: `internal_error`); the worker log holds the trace."
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                               "schema": {"type": "integer", "minimum": 0}}}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_reply(description: str, schema: Schema, media: str = JSON) -> Schema:
    return {"description": description, "content": {media: {"schema": schema}}}


def error(description: str, *, retry_after: bool = False) -> Schema:
    reply = json_reply(description, ref("Error"))
    if retry_after:
        reply["headers"] = RETRY_AFTER
    return reply


def body(schema: Schema, media: Iterable[str] = (JSON,), *, description: str = "") -> Schema:
    out: Schema = {"required": True, "content": {m: {"schema": schema} for m in media}}
    if description:
        out["description"] = description
    return out


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def flag(name: str, description: str) -> Schema:
    """A boolean query flag (read by ``query_flag``: ``true``, ``1`` or ``yes``)."""
    return query(name, {"type": "boolean", "default": False}, description)


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    responses: Mapping[int, Schema],
    parameters: Iterable[Schema] = (),
    request: Schema | None = None,
    reads_json: bool = True,
    description: str = "",
) -> Schema:
    """One operation; adds the shared error responses its parameters and body imply.

    ``reads_json``: the body is read by ``read_json`` (400, 408, 413, 415 as it answers).
    """
    out: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        out["description"] = description
    params = list(parameters)
    if params:
        out["parameters"] = params
    replies: dict[int, Schema] = dict(responses)
    if request is not None:
        out["requestBody"] = request
    if request is not None and reads_json:
        for status, text in _BODY_ERRORS.items():
            replies.setdefault(status, error(text))
    if any(p["in"] == "path" for p in params):
        # aiohttp matches a path parameter up to the next "/": a value holding one finds
        # no route, which the error middleware answers as 404 "no such endpoint".
        replies.setdefault(404, error("Not found (or no route for this path)."))
    replies.setdefault(500, error(_INTERNAL))
    out["responses"] = replies
    return out


def secure(op: Schema, right: Right) -> Schema:
    """``op`` with the security and the 401/403/429 replies the gate gives it.

    Open routes name no scheme (``security: []``); reads take a token or none (one is
    needed only with ONEPIPE_AUTH_READS=token); publishing and writes need one whenever
    tokens are configured. Without a tokens file the API is open and none of these occur.
    """
    replies: dict[int, Schema] = dict(op["responses"])
    if right is Right.OPEN:
        security: list[dict[str, list[str]]] = []
    else:
        reads = right is Right.READ
        security = [{}, {"bearerAuth": []}] if reads else [{"bearerAuth": []}]
        replies.setdefault(401, error(_UNAUTHORIZED.format(
            reads=" and ONEPIPE_AUTH_READS=token" if reads else "")))
        replies.setdefault(403, error(_FORBIDDEN[right]))
        replies.setdefault(429, error(_RATE_LIMITED, retry_after=True))
    return {**op, "security": security,
            "responses": {str(status): replies[status] for status in sorted(replies)}}
