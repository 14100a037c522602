"""Topic catalog over HTTP: ``GET /topics``, ``GET|PUT /topics/{topic}/metadata``.

``PUT`` takes the catalog fields as JSON with ``schema`` as the Avro schema (object or
string); it registers the schema version if new, creates the Kafka topic, and stores the
metadata, after checking all of it (see :mod:`onepipe.app.catalog`).
"""

from __future__ import annotations

from aiohttp import web

from onepipe.app.catalog import apply_topic
from onepipe.app.web.http import CTX, json_response, read_json
from onepipe.schemas.errors import MetadataError
from onepipe.schemas.metadata import metadata_to_dict
from onepipe.schemas.topic_names import value_subject


async def list_topics(request: web.Request) -> web.Response:
    return json_response(sorted(request.app[CTX].registry.state.topics))


async def get_metadata(request: web.Request) -> web.Response:
    state = request.app[CTX].registry.state
    topic = request.match_info["topic"]
    meta = metadata_to_dict(state.topic_metadata(topic))
    latest = state.version(value_subject(topic), "latest")
    meta.update(topic=topic, schema=latest.schema.json, schema_id=latest.schema_id,
                version=latest.version)
    return json_response(meta)


async def put_metadata(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    topic = request.match_info["topic"]
    body = await read_json(request, max_bytes=ctx.settings.max_request_bytes)
    if not isinstance(body, dict):
        raise MetadataError(f"expected a JSON object of catalog fields, got {type(body).__name__}")
    result = await apply_topic(ctx.registry, topic, body.get("schema"), body,
                               replication_factor=ctx.settings.replication_factor,
                               limits=ctx.settings.schema_limits,
                               check_seconds=ctx.settings.schema_check_seconds)
    return json_response(result.to_json())


def add_topic_routes(app: web.Application) -> None:
    app.router.add_get("/topics", list_topics)
    app.router.add_get("/topics/{topic}/metadata", get_metadata)
    app.router.add_put("/topics/{topic}/metadata", put_metadata)
