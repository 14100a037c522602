"""The Confluent Schema Registry REST API subset, served by every worker.

Shapes and error codes follow Confluent's API so that
``confluent_kafka.schema_registry.SchemaRegistryClient`` works unchanged: 40401 subject
not found (also for ``DELETE /config/{s}`` of a subject without a level, as Confluent
answers), 40402 version not found, 40403 schema not found, 40408 no subject-level config,
409 incompatible (error code 409, as Confluent Platform 7.x answers), 42201 invalid
schema, 42202 invalid version, 42203 invalid level, 42205 read-only subject.
Reads come from this worker's replayed state; writes go through the registry log.
Deletes and modes live in onepipe.app.web.registry_deletes.

``?deleted=true`` includes soft-deleted subjects and versions where Confluent takes it;
``?normalize=true`` compares (and registers) schemas in Confluent's normalized form
(onepipe.schemas.registry.normalize); ``offset``/``limit`` page lists (``limit`` -1 or
absent: all). ``GET /schemas/ids/{id}`` and its ``/schema`` keep answering for ids whose
versions were all deleted: records written with them must stay decodable.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from onepipe.app.context import WorkerContext
from onepipe.app.web.http import (
    CTX,
    REGISTRY_CONTENT_TYPE,
    query_flag,
    read_json,
    registry_response,
)
from onepipe.app.web.registry_deletes import add_delete_and_mode_routes
from onepipe.app.web.schema_input import off_loop, parse_submitted
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.compatibility import Compatibility, can_read, incompatibilities
from onepipe.schemas.errors import (
    InvalidCompatibilityError,
    MetadataError,
    NotFoundError,
    RequestError,
    SchemaError,
)
from onepipe.schemas.metadata_checks import validate_against_schema
from onepipe.schemas.registry.normalize import normalized
from onepipe.schemas.registry_state import (
    SUBJECT_CONFIG_NOT_FOUND,
    SUBJECT_NOT_FOUND,
    SchemaVersion,
    parse_version,
)


async def _schema_from_body(request: web.Request) -> AvroSchema:
    body = await read_json(request, max_bytes=request.app[CTX].settings.max_request_bytes,
                           require_type=False)
    if not isinstance(body, dict) or "schema" not in body:
        raise SchemaError('expected a JSON object {"schema": "<Avro schema as a string>"}')
    schema_type = body.get("schemaType", "AVRO")
    if schema_type != "AVRO":
        raise SchemaError(f"schemaType {schema_type!r} is not supported; onepipe holds AVRO only")
    if body.get("references"):
        raise SchemaError("schema references are not supported; inline the referenced types")
    text = body["schema"]
    if not isinstance(text, str):
        raise SchemaError(
            f"`schema` must be the schema as a JSON string, got {type(text).__name__}")
    return await parse_submitted(text, request.app[CTX].settings)


def _check_topic_subject(ctx: WorkerContext, subject: str, schema: AvroSchema) -> None:
    """A registered topic's value subject only takes record schemas that fit its metadata."""
    topic = ctx.registry.state.topic_of(subject)
    if topic is None:
        return
    meta = ctx.registry.state.topics[topic]
    try:
        validate_against_schema(meta, schema)
    except MetadataError as exc:
        raise SchemaError(f"schema does not fit topic {topic!r}: {exc.message}") from exc


def _deleted(request: web.Request) -> bool:
    return query_flag(request, "deleted")


def _deleted_only(request: web.Request) -> bool:
    # Confluent's parameter is deletedOnly; confluent_kafka's client sends deleted_only.
    return query_flag(request, "deletedOnly") or query_flag(request, "deleted_only")


def _page(request: web.Request, items: list[Any]) -> list[Any]:
    """``offset``/``limit`` as Confluent takes them (limit -1 or absent: no limit)."""
    def number(name: str, default: int) -> int:
        raw = request.query.get(name, "")
        try:
            return int(raw) if raw else default
        except ValueError:
            raise RequestError(f"query parameter {name}={raw!r} is not an integer",
                               code="bad_query") from None
    offset, limit = max(number("offset", 0), 0), number("limit", -1)
    return items[offset:] if limit < 0 else items[offset:offset + limit]


async def list_subjects(request: web.Request) -> web.Response:
    """``GET /subjects[?subjectPrefix=&deleted=&deletedOnly=&offset=&limit=]``."""
    names = request.app[CTX].registry.state.subject_names(deleted=_deleted(request),
                                                       deleted_only=_deleted_only(request))
    prefix = request.query.get("subjectPrefix", "")
    return registry_response(_page(request, [n for n in names if n.startswith(prefix)]))


async def list_versions(request: web.Request) -> web.Response:
    """``GET /subjects/{s}/versions[?deleted=&deletedOnly=&offset=&limit=]``."""
    versions = request.app[CTX].registry.state.versions(
        request.match_info["subject"], deleted=_deleted(request),
        deleted_only=_deleted_only(request))
    return registry_response(_page(request, versions))


def _version(request: web.Request) -> SchemaVersion:
    return request.app[CTX].registry.state.version(
        request.match_info["subject"], request.match_info["version"], deleted=_deleted(request))


async def get_version(request: web.Request) -> web.Response:
    return registry_response(_version(request).to_json())


async def get_version_schema(request: web.Request) -> web.Response:
    return web.Response(text=_version(request).schema.text, content_type=REGISTRY_CONTENT_TYPE)


async def referenced_by(request: web.Request) -> web.Response:
    """``GET /subjects/{s}/versions/{v}/referencedby``: always ``[]`` (no references)."""
    _version(request)  # 40401 / 40402 / 42202 as Confluent
    return registry_response([])


async def register(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    subject = request.match_info["subject"]
    schema = await _schema_from_body(request)
    _check_topic_subject(ctx, subject, schema)
    version = await ctx.registry.register(subject, schema,
                                          normalize=query_flag(request, "normalize"))
    return registry_response({"id": version.schema_id})


async def lookup(request: web.Request) -> web.Response:
    """``POST /subjects/{s}[?deleted=&normalize=]``: the version holding the schema."""
    ctx = request.app[CTX]
    subject = request.match_info["subject"]
    schema = await _schema_from_body(request)
    state = ctx.registry.state
    deleted = _deleted(request)
    state.history(subject, deleted=deleted)  # 40401 when the subject does not exist
    found = state.lookup(subject, schema, deleted=deleted,
                         normalize=query_flag(request, "normalize"))
    if found is None:
        raise NotFoundError(f"schema not found under subject {subject!r}", 40403)
    return registry_response(found.to_json())


async def list_schemas(request: web.Request) -> web.Response:
    """``GET /schemas[?subjectPrefix=&deleted=&latestOnly=&offset=&limit=]``: every
    (subject, version) as ``{"subject", "version", "id", "schema"}``."""
    state = request.app[CTX].registry.state
    deleted, prefix = _deleted(request), request.query.get("subjectPrefix", "")
    items = []
    for subject in state.subject_names(deleted=deleted):
        if not subject.startswith(prefix):
            continue
        versions = state.histories[subject].listed(deleted=deleted)
        if query_flag(request, "latestOnly"):
            versions = versions[-1:]
        items += [state.version(subject, v, deleted=True).to_json() for v in versions]
    return registry_response(_page(request, items))


async def get_schema(request: web.Request) -> web.Response:
    schema_id = _int_id(request.match_info["id"])
    schema = request.app[CTX].registry.state.schema_by_id(schema_id)
    return registry_response({"schema": schema.text})


async def get_schema_text(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}/schema``: the schema text alone."""
    schema = request.app[CTX].registry.state.schema_by_id(_int_id(request.match_info["id"]))
    return web.Response(text=schema.text, content_type=REGISTRY_CONTENT_TYPE)


async def get_schema_versions(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}/versions[?deleted=]``; ``[]`` when every version holding
    the id was deleted (the id itself stays, see the module docstring)."""
    state = request.app[CTX].registry.state
    schema_id = _int_id(request.match_info["id"])
    state.schema_by_id(schema_id)
    pairs = state.subjects_of_id(schema_id, deleted=_deleted(request))
    return registry_response(_page(request, [{"subject": s, "version": v} for s, v in pairs]))


async def get_schema_subjects(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}/subjects[?deleted=]``: the subjects holding the id."""
    state = request.app[CTX].registry.state
    schema_id = _int_id(request.match_info["id"])
    state.schema_by_id(schema_id)
    pairs = state.subjects_of_id(schema_id, deleted=_deleted(request))
    return registry_response(_page(request, list(dict.fromkeys(s for s, _ in pairs))))


async def schema_types(request: web.Request) -> web.Response:
    return registry_response(["AVRO"])


def _int_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise NotFoundError(f"schema id {raw!r} not found; ids are positive integers", 40403)
    return int(raw)


async def get_global_config(request: web.Request) -> web.Response:
    """``GET /config``; ``defaultToGlobal`` changes nothing at the global level."""
    level = request.app[CTX].registry.state.compatibility(None)
    return registry_response({"compatibilityLevel": level.value})


async def delete_global_config(request: web.Request) -> web.Response:
    """``DELETE /config``: back to the default level; answers the level it had."""
    ctx = request.app[CTX]
    previous = ctx.registry.state.compatibility(None)
    await ctx.registry.set_config(None, None)
    return registry_response({"compatibilityLevel": previous.value})


async def put_config(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    subject = request.match_info.get("subject")
    body = await read_json(request, max_bytes=ctx.settings.max_request_bytes, require_type=False)
    if not isinstance(body, dict) or "compatibility" not in body:
        raise InvalidCompatibilityError(
            'expected a JSON object {"compatibility": "<LEVEL>"} with one of the seven levels')
    level = Compatibility.parse(body["compatibility"])
    await ctx.registry.set_config(subject, level)
    return registry_response({"compatibility": level.value})


async def get_subject_config(request: web.Request) -> web.Response:
    state = request.app[CTX].registry.state
    subject = request.match_info["subject"]
    if subject in state.configs:
        return registry_response({"compatibilityLevel": state.configs[subject].value})
    if query_flag(request, "defaultToGlobal"):
        return registry_response({"compatibilityLevel": state.compatibility(None).value})
    raise NotFoundError(
        f"subject {subject!r} does not have subject-level compatibility configured",
        SUBJECT_CONFIG_NOT_FOUND,
    )


async def delete_subject_config(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    subject = request.match_info["subject"]
    previous = ctx.registry.state.configs.get(subject)
    if previous is None:
        # Confluent answers 40401 here, not 40408 (ConfigResource.deleteSubjectConfig).
        raise NotFoundError(
            f"Subject '{subject}' not found: it has no subject-level compatibility level",
            SUBJECT_NOT_FOUND,
        )
    await ctx.registry.set_config(subject, None)
    return registry_response({"compatibilityLevel": previous.value})


async def check_compatibility(request: web.Request) -> web.Response:
    """``POST /compatibility/subjects/{s}/versions[/{v}]``.

    With a version, the new schema is checked against that one version in the
    directions the subject's mode names; without, against the versions the mode names
    (all of them when transitive), exactly as registration would.
    """
    ctx = request.app[CTX]
    state = ctx.registry.state
    subject = request.match_info["subject"]
    raw_version = request.match_info.get("version")
    # 42202 before anything else; -1 means latest, as in Confluent's API.
    latest = raw_version is None or parse_version(raw_version) == -1
    schema = await _schema_from_body(request)
    if query_flag(request, "normalize"):
        schema = normalized(schema)
    mode = state.compatibility(subject)
    if subject not in state.subjects:
        if latest:
            return registry_response({"is_compatible": True, "messages": []})
        state.versions(subject)  # raises 40401
    # Avro's checker costs the square of the fields: in a thread, on inputs taken here.
    bound, what = ctx.settings.schema_check_seconds, "checking compatibility"
    if raw_version is None:
        reasons = await off_loop(bound, what, incompatibilities, schema,
                                 state.live_schemas(subject), mode)
    else:
        old = state.version(subject, raw_version).schema
        reasons = await off_loop(bound, what, _against, schema, old, mode)
    body: dict[str, Any] = {"is_compatible": not reasons}
    if query_flag(request, "verbose") or reasons:
        body["messages"] = reasons
    return registry_response(body)


def _against(new: AvroSchema, old: AvroSchema, mode: Compatibility) -> list[str]:
    """Why ``new`` may not follow ``old`` in the directions ``mode`` names."""
    reasons = can_read(new, old) if mode.checks_backward else []
    return reasons + (can_read(old, new) if mode.checks_forward else [])


def add_registry_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/subjects", list_subjects)
    r.add_get("/subjects/{subject}/versions", list_versions)
    r.add_post("/subjects/{subject}/versions", register)
    r.add_get("/subjects/{subject}/versions/{version}", get_version)
    r.add_get("/subjects/{subject}/versions/{version}/schema", get_version_schema)
    r.add_get("/subjects/{subject}/versions/{version}/referencedby", referenced_by)
    r.add_post("/subjects/{subject}", lookup)
    r.add_get("/schemas", list_schemas)
    r.add_get("/schemas/types", schema_types)
    r.add_get("/schemas/ids/{id}", get_schema)
    r.add_get("/schemas/ids/{id}/schema", get_schema_text)
    r.add_get("/schemas/ids/{id}/versions", get_schema_versions)
    r.add_get("/schemas/ids/{id}/subjects", get_schema_subjects)
    r.add_get("/config", get_global_config)
    r.add_put("/config", put_config)
    r.add_delete("/config", delete_global_config)
    r.add_get("/config/{subject}", get_subject_config)
    r.add_put("/config/{subject}", put_config)
    r.add_delete("/config/{subject}", delete_subject_config)
    r.add_post("/compatibility/subjects/{subject}/versions", check_compatibility)
    r.add_post("/compatibility/subjects/{subject}/versions/{version}", check_compatibility)
    add_delete_and_mode_routes(app)
