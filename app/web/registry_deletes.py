"""Confluent's subject and version deletes and its registry modes, served by every worker.

Deletes follow Confluent's order: a soft delete first (``DELETE /subjects/{s}`` or
``.../versions/{v}``) hides the versions from listings and lookups (they come back with
``?deleted=true``); only then ``?permanent=true`` removes them, else 40405 (subject) or
40407 (version). Deleting again what is already soft-deleted is 40404 / 40406. Ids are
never freed: ``GET /schemas/ids/{id}`` keeps answering, so records already written stay
decodable (onepipe's deviation from Confluent, see onepipe.schemas.registry_state). A
registered topic's value subject keeps at least one live version (42205 otherwise).

Modes (``/mode``, ``/mode/{subject}``): READWRITE, READONLY, READONLY_OVERRIDE; IMPORT is
refused with 42204 (onepipe.schemas.registry.modes says why). A read-only subject refuses
registrations, deletes and level changes with 42205; reads, lookups and produce go on.
Every write is a decision in the registry log, like a registration.
"""

from __future__ import annotations

from aiohttp import web

from onepipe.app.web.http import (
    CTX,
    query_flag,
    read_json,
    registry_response,
)
from onepipe.schemas.errors import InvalidModeError, NotFoundError
from onepipe.schemas.registry.modes import Mode
from onepipe.schemas.registry_state import SUBJECT_MODE_NOT_FOUND, SUBJECT_NOT_FOUND


async def delete_subject(request: web.Request) -> web.Response:
    """``DELETE /subjects/{subject}[?permanent=true]``: the versions deleted."""
    versions = await request.app[CTX].registry.delete_subject(
        request.match_info["subject"], permanent=query_flag(request, "permanent"))
    return registry_response(versions)


async def delete_version(request: web.Request) -> web.Response:
    """``DELETE /subjects/{subject}/versions/{version}[?permanent=true]``: its number."""
    version = await request.app[CTX].registry.delete_version(
        request.match_info["subject"], request.match_info["version"],
        permanent=query_flag(request, "permanent"))
    return registry_response(version)


async def get_mode(request: web.Request) -> web.Response:
    """``GET /mode`` and ``GET /mode/{subject}[?defaultToGlobal=true]``."""
    state = request.app[CTX].registry.state
    subject = request.match_info.get("subject")
    if subject is None or subject in state.modes or query_flag(request, "defaultToGlobal"):
        return registry_response({"mode": state.mode(subject).value})
    raise NotFoundError(f"Subject '{subject}' does not have subject-level mode configured",
                        SUBJECT_MODE_NOT_FOUND)


async def put_mode(request: web.Request) -> web.Response:
    """``PUT /mode[/{subject}]`` with ``{"mode": "READONLY"}``; echoes the mode."""
    ctx = request.app[CTX]
    body = await read_json(request, max_bytes=ctx.settings.max_request_bytes, require_type=False)
    if not isinstance(body, dict) or "mode" not in body:
        raise InvalidModeError('expected a JSON object {"mode": "READWRITE" | "READONLY"}')
    mode = Mode.parse(body["mode"])
    await ctx.registry.set_mode(request.match_info.get("subject"), mode)
    return registry_response({"mode": mode.value})


async def delete_mode(request: web.Request) -> web.Response:
    """``DELETE /mode/{subject}``: the mode it had; 40401 when it had none (Confluent)."""
    ctx = request.app[CTX]
    subject = request.match_info["subject"]
    previous = ctx.registry.state.modes.get(subject)
    if previous is None:
        raise NotFoundError(f"Subject '{subject}' not found: it has no subject-level mode",
                            SUBJECT_NOT_FOUND)
    await ctx.registry.set_mode(subject, None)
    return registry_response({"mode": previous.value})


def add_delete_and_mode_routes(app: web.Application) -> None:
    r = app.router
    r.add_delete("/subjects/{subject}", delete_subject)
    r.add_delete("/subjects/{subject}/versions/{version}", delete_version)
    r.add_get("/mode", get_mode)
    r.add_put("/mode", put_mode)
    r.add_get("/mode/{subject}", get_mode)
    r.add_put("/mode/{subject}", put_mode)
    r.add_delete("/mode/{subject}", delete_mode)
