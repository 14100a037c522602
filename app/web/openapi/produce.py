"""The produce APIs in the document: onepipe's records endpoint and Kafka REST v3's.

``POST /topics/{topic}/records`` (app/web/produce.py) takes JSON records of the topic's
Avro schema: one record object, ``{"records": [...], "version"?}``, or an array. A
record's fields depend on the topic, so the document says "an object"; the schema check
is the server's (422 with ``errors`` per record and field). ``/v3/clusters/...`` follows
Confluent's Kafka REST API v3 (cluster and topic views, produce requests one at a time or
as a stream of JSON objects in one chunked body, answered by a stream of results).
"""

from __future__ import annotations

from typing import Any

from onepipe.app.web.openapi.base import (
    body,
    error,
    json_reply,
    operation,
    path_param,
    query,
    ref,
)
from onepipe.app.web.openapi.catalog import TOPIC

__all__ = ["PATHS", "SCHEMAS"]

_BROKER = error("Kafka did not acknowledge in time, or lost its log (`code`: "
                "`broker_unavailable`); nothing is acknowledged; retry.", retry_after=True)
_NO_CLUSTER_ID = error("Kafka did not say its cluster id; retry.", retry_after=True)
_CLUSTER = path_param("cluster_id", {"type": "string", "minLength": 1},
                      "The Kafka cluster id (`GET /v3/clusters` lists it).")
_RELATED = {"type": "object", "required": ["related"],
            "properties": {"related": {"type": "string"}}}
_DATA_TYPES = ["BINARY", "JSON", "STRING", "AVRO", "PROTOBUF", "JSONSCHEMA"]

SCHEMAS: dict[str, Any] = {
    "Record": {"type": "object", "description": "One record: the fields of the topic's "
                                                "Avro schema, as JSON."},
    "RecordBatch": {
        "type": "object", "additionalProperties": False, "required": ["records"],
        "properties": {
            "records": {"type": "array", "minItems": 1, "items": ref("Record")},
            "version": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                        "description": "Schema version (default latest); `?version` wins."},
        },
    },
    "ProduceBody": {"anyOf": [ref("RecordBatch"), ref("Record"),
                              {"type": "array", "minItems": 1, "items": ref("Record")}]},
    "ProduceResult": {
        "type": "object", "required": ["topic", "value_schema_id", "version", "offsets"],
        "properties": {
            "topic": {"type": "string"},
            "value_schema_id": {"type": "integer"},
            "version": {"type": "integer"},
            "offsets": {"type": "array", "description": "Per record, in request order.",
                        "items": {"type": "object", "required": ["partition", "offset"],
                                  "properties": {"partition": {"type": "integer"},
                                                 "offset": {"type": "integer"}}}},
        },
    },
    "ResourceMetadata": {
        "type": "object", "required": ["self"],
        "properties": {"self": {"type": "string"}, "resource_name": {"type": "string"},
                       "next": {"type": "string", "nullable": True}},
    },
    "KafkaCluster": {
        "type": "object", "required": ["kind", "metadata", "cluster_id"],
        "properties": {
            "kind": {"type": "string", "enum": ["KafkaCluster"]},
            "metadata": ref("ResourceMetadata"),
            "cluster_id": {"type": "string"},
            "controller": _RELATED, "acls": _RELATED, "brokers": _RELATED,
            "broker_configs": _RELATED, "consumer_groups": _RELATED, "topics": _RELATED,
            "partition_reassignments": _RELATED,
        },
    },
    "KafkaClusterList": {
        "type": "object", "required": ["kind", "metadata", "data"],
        "properties": {"kind": {"type": "string", "enum": ["KafkaClusterList"]},
                       "metadata": ref("ResourceMetadata"),
                       "data": {"type": "array", "items": ref("KafkaCluster")}},
    },
    "KafkaTopic": {
        "type": "object", "required": ["kind", "metadata", "cluster_id", "topic_name"],
        "properties": {
            "kind": {"type": "string", "enum": ["KafkaTopic"]},
            "metadata": ref("ResourceMetadata"),
            "cluster_id": {"type": "string"},
            "topic_name": {"type": "string"},
            "is_internal": {"type": "boolean"},
            "replication_factor": {"type": "integer"},
            "partitions_count": {"type": "integer"},
            "partitions": _RELATED, "configs": _RELATED, "partition_reassignments": _RELATED,
        },
    },
    "ProduceRequestData": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": _DATA_TYPES},
            "subject": {"type": "string"},
            "subject_name_strategy": {"type": "string"},
            "schema_id": {"type": "integer"},
            "schema_version": {"type": "integer"},
            "schema": {"type": "string"},
            "data": {"description": "The key or value (for the value: a record of the "
                                    "topic's schema)."},
        },
    },
    "ProduceRequest": {
        "type": "object",
        "properties": {
            "partition_id": {"type": "integer", "minimum": 0},
            "headers": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"},
                               "value": {"type": "string", "format": "byte", "nullable": True}}}},
            "key": ref("ProduceRequestData"),
            "value": ref("ProduceRequestData"),
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "ProduceResponse": {
        "type": "object", "required": ["error_code"],
        "description": "One result: `error_code` 200 with the record's coordinates, or an "
                       "error code and `message`.",
        "properties": {
            "error_code": {"type": "integer"},
            "message": {"type": "string"},
            "cluster_id": {"type": "string"},
            "topic_name": {"type": "string"},
            "partition_id": {"type": "integer"},
            "offset": {"type": "integer"},
            "timestamp": {"type": "string", "format": "date-time", "nullable": True},
            "key": {"type": "object", "properties": {"type": {"type": "string"},
                                                     "size": {"type": "integer"}}},
            "value": {"type": "object", "properties": {
                "type": {"type": "string"}, "subject": {"type": "string"},
                "schema_id": {"type": "integer"}, "schema_version": {"type": "integer"},
                "size": {"type": "integer"}}},
        },
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/topics/{topic}/records": {"post": operation(
        "produceRecords", "Produce records, validated against the topic's schema.",
        tag="produce",
        parameters=[TOPIC, query(
            "version", {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                                  {"type": "string", "enum": ["latest"]}]},
            "Schema version to validate and encode with (default latest; -1 also means "
            "latest). Anything else is 422 (42202).")],
        request=body(ref("ProduceBody")),
        description="Every record is validated before anything is sent; one bad record "
                    "rejects the request and nothing is produced. 200 comes after the "
                    "broker acknowledged every record.",
        responses={200: json_reply("Partition and offset per record.", ref("ProduceResult")),
                   404: error("The topic is not registered (40410), or has no such "
                              "version (40402)."),
                   413: error("Body over the size limit, more records than "
                              "ONEPIPE_MAX_RECORDS_PER_REQUEST (`too_many_records`), or a "
                              "record above ONEPIPE_MAX_RECORD_BYTES (`record_too_large`)."),
                   422: error("Not a record, a batch or an array (`invalid_body`); records "
                              "that do not match the schema (42210, `errors` per record and "
                              "field); an invalid version (42202)."),
                   503: _BROKER})},
    "/v3/clusters": {"get": operation(
        "listClusters", "The Kafka cluster this worker produces to.", tag="kafka-rest-v3",
        responses={200: json_reply("A list of one cluster.", ref("KafkaClusterList")),
                   503: _NO_CLUSTER_ID})},
    "/v3/clusters/{cluster_id}": {"get": operation(
        "getCluster", "One cluster.", tag="kafka-rest-v3",
        parameters=[_CLUSTER],
        responses={200: json_reply("The cluster.", ref("KafkaCluster")),
                   404: error("No such cluster."), 503: _NO_CLUSTER_ID})},
    "/v3/clusters/{cluster_id}/topics/{topic}": {"get": operation(
        "getKafkaTopic", "One registered topic, as Kafka REST describes it.",
        tag="kafka-rest-v3", parameters=[_CLUSTER, TOPIC],
        responses={200: json_reply("The topic.", ref("KafkaTopic")),
                   404: error("No such cluster, or the topic is not registered (40403)."),
                   503: _NO_CLUSTER_ID})},
    "/v3/clusters/{cluster_id}/topics/{topic}/records": {"post": operation(
        "produceRecordV3", "Produce one record per request (Kafka REST v3).",
        tag="kafka-rest-v3", parameters=[_CLUSTER, TOPIC],
        reads_json=False, request=body(ref("ProduceRequest"), description=(
            "One produce request, or (streaming mode, `Transfer-Encoding: chunked`) a "
            "sequence of them, each a JSON object.")),
        description="The value is validated against the topic's schema like "
                    "`POST /topics/{topic}/records`. In streaming mode the reply is a "
                    "stream of ProduceResponse objects, one per request, in order.",
        responses={200: json_reply("The record's coordinates (streaming: one result per "
                                   "request).", ref("ProduceResponse")),
                   400: error("Not JSON, not an object, a header value that is not "
                              "base64, or a timestamp that is not ISO-8601."),
                   404: error("No such cluster, or the topic is not registered (40403)."),
                   413: error("A body (not streamed) or one record over the size limit."),
                   415: error("Not `application/json` in UTF-8."),
                   422: error("An empty body, a request of the wrong shape, or a value that "
                              "does not match the topic's schema."),
                   503: _BROKER})},
}
