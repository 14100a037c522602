"""HTTP plumbing shared by every view: JSON bodies in and out, and errors as JSON.

Every failure a client can cause ends as a JSON body ``{"error_code", "message", "code"}``
with a 4xx status (Confluent's error shape, plus our stable ``code``). A 500 means a bug
in onepipe: it is logged with its stack trace and the client gets a plain message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from onepipe.app.context import WorkerContext
from onepipe.app.web.json_body import parse_json_body
from onepipe.schemas.errors import OnepipeError, RequestError

log = logging.getLogger(__name__)

#: The worker context every view reads (registry, publisher, settings, metrics).
CTX = web.AppKey("onepipe", WorkerContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_TYPES = frozenset(
    {
        "application/json",
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/octet-stream",  # what some Confluent clients send for registry calls
    }
)
REGISTRY_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def json_response(
    body: Any, status: int = 200, content_type: str = "application/json"
) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=content_type)


def registry_response(body: Any, status: int = 200) -> web.Response:
    """A registry reply, in the media type Confluent's clients expect."""
    return json_response(body, status, content_type=REGISTRY_CONTENT_TYPE)


def error_response(exc: OnepipeError) -> web.Response:
    response = json_response(exc.to_json(), status=exc.status)
    if exc.retry_after is not None:
        # A 503 the client should retry (RFC 9110 section 10.2.3): say when.
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def read_json(
    request: web.Request, *, max_bytes: int, allowed_types: frozenset[str] = JSON_TYPES,
    require_type: bool = True,
) -> Any:
    """The request body as JSON data; 415, 413 or 400 with a precise message otherwise."""
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    if (ctype or require_type) and ctype not in allowed_types:
        raise RequestError(
            f"unsupported Content-Type {ctype or '(none)'!r}; send JSON with "
            "Content-Type: application/json",
            status=415, code="unsupported_media_type",
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(request.content_length, max_bytes)
    read_seconds = request.app[CTX].settings.request_read_seconds
    try:
        if request.content.is_eof():  # all there already (most requests): no timer to arm
            raw = await request.read()
        else:
            # Bounded, so a client trickling its body (slowloris) cannot hold a connection
            # and a handler for longer than a legitimate upload takes.
            async with asyncio.timeout(read_seconds):
                raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(None, max_bytes) from exc
    except TimeoutError:
        raise RequestError(
            f"the request body did not arrive within {read_seconds:g} s "
            "(ONEPIPE_REQUEST_READ_SECONDS); send it at once", status=408,
            code="request_timeout") from None
    if len(raw) > max_bytes:
        raise _too_large(len(raw), max_bytes)
    if not raw.strip():
        raise RequestError("request body is empty; send a JSON document", code="empty_body")
    return parse_json_body(raw)


def _too_large(size: int | None, limit: int) -> RequestError:
    got = f"{size} bytes" if size is not None else "more"
    return RequestError(
        f"request body of {got} exceeds the limit of {limit} bytes; split the records "
        "into smaller requests (ONEPIPE_MAX_REQUEST_BYTES sets the limit)",
        status=413, code="payload_too_large",
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a JSON body with the right status."""
    try:
        return await handler(request)
    except OnepipeError as exc:
        if exc.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, exc.message)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # A plain HTTP status, never a Confluent code such as 40401 (subject not found),
        # so a client cannot mistake a missing endpoint for a missing subject.
        code = exc.status
        message = exc.reason
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            message = "request body exceeds the size limit (ONEPIPE_MAX_REQUEST_BYTES)"
        response = json_response({"error_code": code, "message": message,
                                  "code": "http_error"}, status=exc.status)
        if "Allow" in exc.headers:  # a 405 names the methods the resource takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # A bug in onepipe, not bad input: keep the stack trace in the log, not the reply.
        log.exception("internal error on %s %s", request.method, request.path)
        return json_response(
            {"error_code": 50001, "message": "internal error; see the worker log",
             "code": "internal_error"},
            status=500,
        )


def query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("1", "true", "yes")
