"""The topic catalog in the document: ``GET /topics``, ``GET|PUT /topics/{topic}/metadata``.

The metadata fields are those :func:`onepipe.schemas.metadata.metadata_from_dict` reads,
with its own patterns and limits (imported, so the document and the parser cannot drift);
rules between fields and against the schema (an order field that is a key field, a key
field the schema lacks) are beyond JSON Schema: they are 422 with ``field`` naming the
offending value.
"""

from __future__ import annotations

from typing import Any

from onepipe.app.web.openapi.base import body, error, json_reply, operation, path_param, ref
from onepipe.app.web.openapi.registry import WRITE_BUSY
from onepipe.schemas.metadata import (
    _AVRO_NAME,  # the parser's own patterns: one definition for parser and document
    _ENV,
    _SINK,
    _TABLE,
    _TOPIC,
    KAFKA_TIMESTAMP,
    MAX_FLUSH_BYTES,
    MAX_FLUSH_SECONDS,
    MAX_PARTITIONS,
    ORDER_RULES,
    SINK_KINDS,
)

__all__ = ["PATHS", "SCHEMAS", "TOPIC"]


def _full(pattern: str) -> dict[str, Any]:
    """A string matching ``pattern`` whole (the parser uses ``fullmatch``)."""
    return {"type": "string", "pattern": f"^(?:{pattern})$"}


_NAME = _full(_AVRO_NAME.pattern)
_NAMES = {"anyOf": [_NAME, {"type": "array", "items": _NAME, "uniqueItems": True}]}

TOPIC = path_param("topic", {**_full(_TOPIC.pattern), "not": {"enum": [".", ".."]}},
                   "A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.")

SCHEMAS: dict[str, Any] = {
    "OrderRule": {
        "type": "object", "additionalProperties": False, "required": ["rule"],
        "properties": {"rule": {"type": "string", "enum": list(ORDER_RULES)}, "field": _NAME},
        "description": "`max` takes an int/long field, `vector_clock` a map<long> field, "
                       "`first` no field.",
    },
    "Checks": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "count_distinct": {"anyOf": [{"type": "string", "enum": ["key"]},
                                         {"type": "boolean"}]},
            "sum": _NAMES,
            "checksum": {"anyOf": [{"type": "string", "enum": ["row"]}, {"type": "boolean"}]},
        },
    },
    "ArchivePolicy": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "flush_records": {"type": "integer", "minimum": 1},
            "flush_bytes": {"anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_FLUSH_BYTES},
                {"type": "string", "description": "A size such as `64MiB` (at most 5GiB)."}]},
            "flush_seconds": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                              "maximum": MAX_FLUSH_SECONDS},
        },
    },
    "SinkSpec": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "dsn_env", "table"],
        "properties": {"name": _full(_SINK.pattern),
                       "kind": {"type": "string", "enum": list(SINK_KINDS)},
                       "dsn_env": _full(_ENV.pattern), "table": _full(_TABLE.pattern)},
    },
    "TopicMetadataRequest": {
        "type": "object", "additionalProperties": False, "required": ["schema"],
        "description": "A catalog entry as JSON (the fields of `catalog/<topic>.yaml`).",
        "properties": {
            "topic": {**_full(_TOPIC.pattern), "description": "Must equal the path's topic."},
            "schema": {"anyOf": [{"type": "object"}, {"type": "string"}],
                       "description": "The Avro record schema, as an object or a JSON string."},
            "compatibility": ref("CompatibilityLevel"),
            "partitions": {"type": "integer", "minimum": 1, "maximum": MAX_PARTITIONS},
            "key": _NAMES,
            "order": ref("OrderRule"),
            "partition_time": {**_NAME, "description": f"`{KAFKA_TIMESTAMP}` (the record "
                                                      "timestamp) or a timestamp field."},
            "checks": ref("Checks"),
            "archive": ref("ArchivePolicy"),
            "sinks": {"type": "array", "items": ref("SinkSpec")},
        },
    },
    "TopicMetadata": {
        "type": "object",
        "required": ["topic", "compatibility", "partitions", "key", "order", "partition_time",
                     "checks", "archive", "sinks", "schema", "schema_id", "version"],
        "properties": {
            "topic": {"type": "string"},
            "compatibility": ref("CompatibilityLevel"),
            "partitions": {"type": "integer"},
            "key": {"type": "array", "items": {"type": "string"}},
            "order": ref("OrderRule"),
            "partition_time": {"type": "string"},
            "checks": ref("Checks"),
            "archive": ref("ArchivePolicy"),
            "sinks": {"type": "array", "items": ref("SinkSpec")},
            "schema": {"description": "The latest value schema, as JSON."},
            "schema_id": {"type": "integer"},
            "version": {"type": "integer"},
        },
    },
    "ApplyResult": {
        "type": "object", "required": ["topic", "changes", "id", "version"],
        "properties": {
            "topic": {"type": "string"},
            "changes": {"type": "array", "items": {"type": "string"},
                        "description": "What changed, in words; empty when already in force."},
            "id": {"type": "integer", "description": "The value schema's global id."},
            "version": {"type": "integer"},
        },
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/topics": {"get": operation(
        "listTopics", "List the registered topics.", tag="catalog",
        responses={200: json_reply("Topic names, sorted.",
                                   {"type": "array", "items": {"type": "string"}})})},
    "/topics/{topic}/metadata": {
        "get": operation(
            "getTopicMetadata", "A topic's catalog entry and latest schema.", tag="catalog",
            parameters=[TOPIC],
            responses={200: json_reply("The canonical entry.", ref("TopicMetadata")),
                       404: error("The topic is not registered (40410).")}),
        "put": operation(
            "putTopicMetadata", "Apply a catalog entry: schema, level, Kafka topic, metadata.",
            tag="catalog", parameters=[TOPIC],
            request=body(ref("TopicMetadataRequest")),
            description="Everything is checked before anything is written; applying the "
                        "same entry again changes nothing.",
            responses={200: json_reply("What changed.", ref("ApplyResult")),
                       409: error("The schema is incompatible with the topic's level."),
                       422: error("Invalid schema (42201) or metadata (42202; `field` names "
                                  "the value), or a partition count that differs from the "
                                  "existing topic's."),
                       503: WRITE_BUSY}),
    },
}
