"""The registry API in the document: subjects, versions, schemas by id (app/web/registry.py).

Shapes and error codes are Confluent's (Schema Registry API reference), as
``confluent_kafka.schema_registry.SchemaRegistryClient`` expects them. Successful replies
carry ``application/vnd.schemaregistry.v1+json``; errors are the shared JSON error body
with Confluent's ``error_code``: 40401 subject, 40402 version, 40403 schema not found;
42201 invalid schema, 42202 invalid version; 409 incompatible (with ``reasons``).
Compatibility levels and modes are in :mod:`onepipe.app.web.openapi.config`.
"""

from __future__ import annotations

from typing import Any

from onepipe.app.web.openapi.base import (
    JSON,
    REGISTRY,
    body,
    error,
    flag,
    json_reply,
    operation,
    path_param,
    query,
    ref,
)

__all__ = ["PATHS", "SCHEMAS", "SUBJECT", "VERSION", "WRITE_BUSY", "registry_reply",
           "schema_body"]

#: A request body of a registry write: Confluent clients send their own media type,
#: some send octet-stream (read_json takes both); the document names the JSON ones.
_BODY_TYPES = (REGISTRY, JSON)
_INT32 = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}

SCHEMAS: dict[str, Any] = {
    "SchemaReference": {
        "type": "object",
        "required": ["name", "subject", "version"],
        "properties": {"name": {"type": "string"}, "subject": {"type": "string"},
                       "version": {"type": "integer"}},
    },
    "RegisterSchemaRequest": {
        "type": "object",
        "required": ["schema"],
        "properties": {
            "schema": {"type": "string",
                       "description": "The Avro schema as a JSON string (not an object)."},
            "schemaType": {"type": "string", "enum": ["AVRO"], "default": "AVRO",
                           "description": "Only AVRO is held; any other type is 422."},
            "references": {"type": "array", "items": ref("SchemaReference"),
                           "description": "Not supported: a non-empty list is 422 "
                                          "(inline the referenced types)."},
        },
    },
    "RegisteredSchema": {
        "type": "object", "required": ["id"],
        "properties": {"id": {"type": "integer", "description": "The global schema id."}},
    },
    "SchemaVersion": {
        "type": "object",
        "required": ["subject", "version", "id", "schema"],
        "properties": {
            "subject": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "id": {"type": "integer", "minimum": 1},
            "schema": {"type": "string", "description": "The schema as a JSON string."},
            "schemaType": {"type": "string"},
            "references": {"type": "array", "items": ref("SchemaReference")},
        },
    },
    "SchemaById": {
        "type": "object", "required": ["schema"],
        "properties": {"schema": {"type": "string"}, "schemaType": {"type": "string"},
                       "references": {"type": "array", "items": ref("SchemaReference")}},
    },
    "SubjectVersion": {
        "type": "object", "required": ["subject", "version"],
        "properties": {"subject": {"type": "string"}, "version": {"type": "integer"}},
    },
}

SUBJECT = path_param("subject", {"type": "string", "minLength": 1},
                     "A subject, e.g. `widgets-value` (a topic's value schemas).")
VERSION = path_param(
    "version",
    {"anyOf": [_INT32, {"type": "string", "enum": ["latest"]}]},
    "A version from 1 to 2^31-1, or `latest` (-1 also means latest); anything else is "
    "422 with error_code 42202.")
_ID = path_param("id", _INT32, "A global schema id.")
_DELETED = flag("deleted", "Include soft-deleted subjects and versions.")
_NORMALIZE = flag("normalize", "Normalize the schema before registering or comparing.")
_DELETED_ONLY = flag("deletedOnly", "Only soft-deleted ones (`deleted_only` is read too).")
#: Paged lists: a non-integer offset or limit is 400 (`bad_query`).
_PAGE = [query("offset", {"type": "integer", "default": 0},
               "Skip this many entries (below 0: none)."),
         query("limit", {"type": "integer", "default": -1},
               "At most this many entries; negative: all.")]
_BAD_PAGE = error("`offset` or `limit` is not an integer (`bad_query`).")
_PERMANENT = flag("permanent", "Delete for good (after a soft delete) instead of softly.")


def registry_reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return json_reply(description, schema, REGISTRY)


def schema_body(description: str) -> dict[str, Any]:
    return body(ref("RegisterSchemaRequest"), _BODY_TYPES, description=description)


_NO_SUBJECT = error("Subject (40401) not found.")
_NO_VERSION = error("Subject (40401) or version (40402) not found.")
_BAD_VERSION = error("Invalid version (42202).")
#: A registry write's 503 (shared with the config and mode writes).
WRITE_BUSY = error("Another writer won, or Kafka did not answer; retry.", retry_after=True)
_ANY_JSON: dict[str, Any] = {"description": "Any JSON value: the schema itself."}

PATHS: dict[str, dict[str, Any]] = {
    "/subjects": {"get": operation(
        "listSubjects", "List the subjects.", tag="registry",
        parameters=[_DELETED, _DELETED_ONLY, *_PAGE,
                    query("subjectPrefix", {"type": "string"}, "Only subjects with this prefix.")],
        responses={200: registry_reply("Subject names.",
                                       {"type": "array", "items": {"type": "string"}}),
                   400: _BAD_PAGE})},
    "/subjects/{subject}": {
        "post": operation(
            "lookUpSchema", "Find a schema under a subject.", tag="registry",
            parameters=[SUBJECT, _NORMALIZE, _DELETED],
            request=schema_body("The schema to look up."),
            responses={200: registry_reply("The version holding this schema.",
                                           ref("SchemaVersion")),
                       404: error("Subject (40401) or schema (40403) not found."),
                       422: error("The schema is not valid Avro (42201).")}),
        "delete": operation(
            "deleteSubject", "Delete a subject (softly unless `permanent`).", tag="registry",
            parameters=[SUBJECT, _PERMANENT],
            responses={200: registry_reply("The versions deleted.",
                                           {"type": "array", "items": {"type": "integer"}}),
                       404: error("Subject not found (40401), soft-deleted (40404) or not "
                                  "soft-deleted before a permanent delete (40405)."),
                       422: error("The subject is read-only, or is a registered topic's "
                                  "value subject, which keeps a live version (42205)."),
                       503: WRITE_BUSY}),
    },
    "/subjects/{subject}/versions": {
        "get": operation(
            "listVersions", "List a subject's versions.", tag="registry",
            parameters=[SUBJECT, _DELETED, _DELETED_ONLY, *_PAGE],
            responses={200: registry_reply("Version numbers, ascending.",
                                           {"type": "array", "items": {"type": "integer"}}),
                       400: _BAD_PAGE, 404: _NO_SUBJECT}),
        "post": operation(
            "registerSchema", "Register a schema under a subject.", tag="registry",
            parameters=[SUBJECT, _NORMALIZE],
            request=schema_body("The schema to register."),
            description="Returns the existing id when the schema is already registered "
                        "under the subject. A topic's value subject (`<topic>-value`) only "
                        "takes record schemas that fit the topic's metadata.",
            responses={200: registry_reply("The schema's global id.", ref("RegisteredSchema")),
                       409: error("Incompatible with the subject's compatibility level "
                                  "(`reasons` lists why)."),
                       422: error("Not valid Avro, or does not fit the topic (42201); the "
                                  "subject is read-only, or no schema id is left (42205)."),
                       503: WRITE_BUSY}),
    },
    "/subjects/{subject}/versions/{version}": {
        "get": operation(
            "getVersion", "Get one version of a subject.", tag="registry",
            parameters=[SUBJECT, VERSION, _DELETED],
            responses={200: registry_reply("The version.", ref("SchemaVersion")),
                       404: _NO_VERSION, 422: _BAD_VERSION}),
        "delete": operation(
            "deleteVersion", "Delete one version (softly unless `permanent`).",
            tag="registry", parameters=[SUBJECT, VERSION, _PERMANENT],
            responses={200: registry_reply("The version deleted.", {"type": "integer"}),
                       404: error("Subject (40401) or version (40402) not found, soft-"
                                  "deleted (40407) or not soft-deleted first (40406)."),
                       422: error("Invalid version (42202); read-only subject or a topic's "
                                  "last live version (42205)."), 503: WRITE_BUSY}),
    },
    "/subjects/{subject}/versions/{version}/schema": {"get": operation(
        "getVersionSchema", "Get only the schema of one version.", tag="registry",
        parameters=[SUBJECT, VERSION, _DELETED],
        responses={200: registry_reply("The schema itself.", _ANY_JSON),
                   404: _NO_VERSION, 422: _BAD_VERSION})},
    "/subjects/{subject}/versions/{version}/referencedby": {"get": operation(
        "getReferencedBy", "Ids of the schemas that reference this version.", tag="registry",
        parameters=[SUBJECT, VERSION],
        responses={200: registry_reply("Schema ids.",
                                       {"type": "array", "items": {"type": "integer"}}),
                   404: _NO_VERSION, 422: _BAD_VERSION})},
    "/schemas": {"get": operation(
        "listSchemas", "List schemas (one entry per subject version).", tag="registry",
        parameters=[query("subjectPrefix", {"type": "string"}, "Only subjects with this prefix."),
                    _DELETED, flag("latestOnly", "Only each subject's latest version."),
                    *_PAGE],
        responses={200: registry_reply("Schemas.",
                                       {"type": "array", "items": ref("SchemaVersion")}),
                   400: _BAD_PAGE})},
    "/schemas/types": {"get": operation(
        "listSchemaTypes", "The schema types this registry holds.", tag="registry",
        responses={200: registry_reply("Always `[\"AVRO\"]`.",
                                       {"type": "array", "items": {"type": "string"}})})},
    "/schemas/ids/{id}": {"get": operation(
        "getSchemaById", "Get a schema by its global id.", tag="registry",
        parameters=[_ID],
        responses={200: registry_reply("The schema.", ref("SchemaById")),
                   404: error("Schema not found (40403).")})},
    "/schemas/ids/{id}/schema": {"get": operation(
        "getRawSchemaById", "Get only the schema of a global id.", tag="registry", parameters=[_ID],
        responses={200: registry_reply("The schema itself.", _ANY_JSON),
                   404: error("Schema not found (40403).")})},
    "/schemas/ids/{id}/subjects": {"get": operation(
        "getSubjectsById", "The subjects a schema id is registered under.", tag="registry",
        parameters=[_ID, _DELETED, *_PAGE],
        responses={200: registry_reply("Subject names.",
                                       {"type": "array", "items": {"type": "string"}}),
                   400: _BAD_PAGE, 404: error("Schema not found (40403).")})},
    "/schemas/ids/{id}/versions": {"get": operation(
        "getVersionsById", "The subject versions a schema id is registered as.",
        tag="registry", parameters=[_ID, _DELETED],
        responses={200: registry_reply("Subject and version pairs.",
                                       {"type": "array", "items": ref("SubjectVersion")}),
                   404: error("Schema not found (40403).")})},
}
